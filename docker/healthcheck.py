"""Container health probe: one grpc.health.v1 Check against the streamstats server in this container.

Exit status 0 only when the server answers SERVING; 1 when it answers anything else (NOT_SERVING while it
drains on SIGTERM, SERVICE_UNKNOWN) or cannot be reached within the timeout (not started yet, crashed,
wrong port, a TLS handshake that fails). This is what the Dockerfile's HEALTHCHECK and
docker-compose.yml's healthchecks run: a real gRPC call through the server's health service, not a TCP
probe that an open-but-stuck port would pass. Health checks need no bearer token.

    python healthcheck.py [--host 127.0.0.1] [--port $STREAMSTATS_PORT] [--service NAME] [--timeout 3]
                          [--tls] [--tls-ca ca.pem] [--tls-cert client.pem --tls-key client.key]
                          [--server-name NAME]

The port defaults to $STREAMSTATS_PORT (the server's own variable), else 50051; the timeout to
$STREAMSTATS_HEALTHCHECK_TIMEOUT, else 3 seconds.

TLS is used when the server in this container serves it ($STREAMSTATS_TLS_CERT is set), with --tls, or
when a CA or client certificate is given. --tls-ca (default $STREAMSTATS_HEALTHCHECK_TLS_CA) is the CA
that signed the server's certificate (without it: the system's roots). --server-name (default
$STREAMSTATS_HEALTHCHECK_SERVER_NAME) is the name that certificate is checked against, since the probe
dials 127.0.0.1. A server that requires mutual TLS ($STREAMSTATS_TLS_CLIENT_CA) needs a client
certificate: --tls-cert and --tls-key (default $STREAMSTATS_HEALTHCHECK_TLS_CERT and _KEY); giving one
to a server that does not ask for it is harmless. Only grpcio and grpcio-health-checking are needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class TLS:
    """What the probe needs for a TLS channel: PEM bytes, and the name to check the server against."""

    ca: bytes | None = None  # None: the system's roots
    cert: bytes | None = None  # with key: a client certificate, for mutual TLS
    key: bytes | None = None
    server_name: str | None = None


def check(
    address: str, service: str = "", timeout: float = DEFAULT_TIMEOUT, tls: TLS | None = None
) -> tuple[bool, str]:
    """One Health/Check call: (True, "SERVING") or (False, what went wrong)."""
    # A container may have http_proxy set; the probe must talk to the local server directly.
    options: list[tuple[str, int | str]] = [("grpc.enable_http_proxy", 0)]
    if tls is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
        )
        channel = grpc.secure_channel(address, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else "ERROR"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return False, f"{name}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, str(status)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="healthcheck.py", description="Exit 0 only if the streamstats server answers SERVING."
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(environ.get("STREAMSTATS_PORT") or DEFAULT_PORT),
        help=f"server port (default: $STREAMSTATS_PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--service", default="", help="service to ask about (default: '', the server as a whole)"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=_positive_float(environ.get("STREAMSTATS_HEALTHCHECK_TIMEOUT") or str(DEFAULT_TIMEOUT)),
        help="seconds to wait for the answer "
        f"(default: $STREAMSTATS_HEALTHCHECK_TIMEOUT, else {DEFAULT_TIMEOUT})",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=bool(environ.get("STREAMSTATS_TLS_CERT")),
        help="connect with TLS (default: when $STREAMSTATS_TLS_CERT is set, or a --tls-* file is given)",
    )
    tls.add_argument(
        "--tls-ca",
        default=environ.get("STREAMSTATS_HEALTHCHECK_TLS_CA") or None,
        metavar="PEM",
        help="the CA that signed the server's certificate "
        "(default: $STREAMSTATS_HEALTHCHECK_TLS_CA, else the system's roots)",
    )
    tls.add_argument(
        "--tls-cert",
        default=environ.get("STREAMSTATS_HEALTHCHECK_TLS_CERT") or None,
        metavar="PEM",
        help="client certificate, for a server that requires mutual TLS "
        "(default: $STREAMSTATS_HEALTHCHECK_TLS_CERT)",
    )
    tls.add_argument(
        "--tls-key",
        default=environ.get("STREAMSTATS_HEALTHCHECK_TLS_KEY") or None,
        metavar="PEM",
        help="the client certificate's key (default: $STREAMSTATS_HEALTHCHECK_TLS_KEY)",
    )
    tls.add_argument(
        "--server-name",
        default=environ.get("STREAMSTATS_HEALTHCHECK_SERVER_NAME") or None,
        metavar="NAME",
        help="check the server's certificate against NAME rather than --host "
        "(default: $STREAMSTATS_HEALTHCHECK_SERVER_NAME)",
    )
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: give both or neither")
    return args


def tls_config(args: argparse.Namespace) -> TLS | None:
    """The TLS settings, files read; None for plaintext. OSError if a file cannot be read."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.server_name):
        return None

    def read(path: str | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    return TLS(read(args.tls_ca), read(args.tls_cert), read(args.tls_key), args.server_name)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv, os.environ if environ is None else environ)
    host = f"[{args.host}]" if ":" in args.host else args.host
    address = f"{host}:{args.port}"
    try:
        tls = tls_config(args)
    except OSError as exc:
        print(f"{address}: cannot read a TLS file: {exc}", file=sys.stderr)
        return 1
    healthy, status = check(address, args.service, args.timeout, tls)
    scheme = "plaintext" if tls is None else "TLS"
    if not healthy and tls is not None:
        status += (
            f" (TLS: CA {args.tls_ca or 'system roots'}, server name {args.server_name or args.host}, "
            f"client certificate {args.tls_cert or 'none'})"
        )
    print(
        f"{address} ({scheme}) {args.service or '(server)'}: {status}",
        file=sys.stdout if healthy else sys.stderr,
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
