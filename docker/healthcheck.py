"""Container health probe: one grpc.health.v1 Check against the streamstats server in this container.

Exit status 0 only when the server answers SERVING; 1 when it answers anything else (NOT_SERVING while it
drains on SIGTERM, SERVICE_UNKNOWN) or cannot be reached within the timeout (not started yet, crashed,
wrong port). This is what the Dockerfile's HEALTHCHECK and docker-compose.yml's healthcheck run: a real
gRPC call through the server's health service, not a TCP probe that an open-but-stuck port would pass.

    python healthcheck.py [--host 127.0.0.1] [--port $STREAMSTATS_PORT] [--service NAME] [--timeout 3]

The port defaults to $STREAMSTATS_PORT (the server's own variable), else 50051; the timeout to
$STREAMSTATS_HEALTHCHECK_TIMEOUT, else 3 seconds. Only grpcio and grpcio-health-checking are needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051
DEFAULT_TIMEOUT = 3.0


def check(address: str, service: str = "", timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """One Health/Check call: (True, "SERVING") or (False, what went wrong)."""
    # A container may have http_proxy set; the probe must talk to the local server directly.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(address, options=options) as channel:
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv, os.environ if environ is None else environ)
    host = f"[{args.host}]" if ":" in args.host else args.host
    address = f"{host}:{args.port}"
    healthy, status = check(address, args.service, args.timeout)
    print(f"{address} {args.service or '(server)'}: {status}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
