"""Parse the command line, run one command, map failures to one line and an exit code."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import TextIOWrapper
from typing import TextIO

import streamstats
from streamstats import Client, ClientConfig, TLSConfig
from streamstats._cli import commands

EXIT_OK = 0
EXIT_REFUSED = 1  # the server refused the request, or stdin had lines that are not numbers
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4  # unauthenticated or permission denied
EXIT_UNAVAILABLE = 5  # cannot reach the server, or it did not answer in time
EXIT_INTERRUPTED = 130

DEFAULT_SERVER = "127.0.0.1:50051"

EPILOG = f"""\
environment: STREAMSTATS_SERVER (--host), STREAMSTATS_TOKEN, STREAMSTATS_TLS=1, STREAMSTATS_CA,
STREAMSTATS_CERT, STREAMSTATS_KEY, STREAMSTATS_SERVER_NAME, STREAMSTATS_TIMEOUT; an option wins over
its variable. (Not STREAMSTATS_HOST: that one is the server's listen address.)

exit codes: {EXIT_OK} ok; {EXIT_REFUSED} the server refused the request (invalid argument, already exists,
a limit) or stdin held lines that are not numbers; {EXIT_USAGE} usage error; {EXIT_NOT_FOUND} stream not
found; {EXIT_DENIED} unauthenticated or permission denied; {EXIT_UNAVAILABLE} server unavailable or too
slow; {EXIT_INTERRUPTED} interrupted (Ctrl-C).

examples:
  streamstats add api-latency 12.5 8 31
  tail -f latencies.log | streamstats add api-latency -
  streamstats stats api-latency -q 0.5 -q 0.99 -k 3
  streamstats watch api-latency
"""

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def seconds(text: str) -> float:
    """ "30s", "5m", "1h", "250ms", "1.5" (seconds) -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 5m, 1h, 250ms or 1.5")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _positive_seconds(text: str) -> float:
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def _quantile(text: str) -> float:
    """0.99, or p99 / p99.9 / 99%."""
    raw = text.strip().lower()
    try:
        if raw.startswith("p"):
            return float(raw[1:]) / 100
        if raw.endswith("%"):
            return float(raw[:-1]) / 100
        return float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a quantile like 0.99, p99 or 99%") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None) -> None:
    """The options every command shares. On the top parser (``environ`` given) they default to the
    environment; on each command's parser they default to SUPPRESS, so ``streamstats list --json``
    works too and an option given after the command overrides, but never resets, the one before it.
    """

    def env(name: str, fallback: str | None = None) -> str | None:
        if environ is None:
            return argparse.SUPPRESS
        return environ.get(name, fallback)

    parser.add_argument("--host", default=env("STREAMSTATS_SERVER", DEFAULT_SERVER), help="server host:port")
    parser.add_argument("--token", default=env("STREAMSTATS_TOKEN"), help="bearer token (prefer the env var)")
    tls_default: object = argparse.SUPPRESS
    if environ is not None:
        tls_default = environ.get("STREAMSTATS_TLS", "").lower() in ("1", "true", "yes")
    parser.add_argument("--tls", action="store_true", default=tls_default, help="use TLS")
    parser.add_argument(
        "--ca", default=env("STREAMSTATS_CA"), help="PEM CA of the server's cert (implies --tls)"
    )
    parser.add_argument("--cert", default=env("STREAMSTATS_CERT"), help="client PEM cert for mutual TLS")
    parser.add_argument("--key", default=env("STREAMSTATS_KEY"), help="client PEM key for mutual TLS")
    parser.add_argument(
        "--server-name", default=env("STREAMSTATS_SERVER_NAME"), help="name to check the cert for"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=env("STREAMSTATS_TIMEOUT", "10"),
        help="per call, e.g. 10s",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if environ is not None else argparse.SUPPRESS,
        help="print one JSON document (JSON lines for watch)",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamstats",
        description="Talk to a streamstats server: streams, adds, medians, quantiles, live views.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(parser, environ)
    shared = argparse.ArgumentParser(add_help=False)
    _add_connection_options(shared, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[shared])
        p.set_defaults(run=run)
        return p

    p = command("create", "create a stream (the same config again is fine)", commands.create)
    p.add_argument("name")
    p.add_argument("--window-size", type=int, default=0, help="keep the last N values (0: all)")
    p.add_argument("--window-duration", type=seconds, default=None, help="keep values younger than this")
    command("get", "show one stream", commands.get).add_argument("name")
    command("list", "list streams", commands.list_streams).add_argument("--prefix", default="")
    command("delete", "delete a stream and its values", commands.delete).add_argument("name")
    p = command("add", "add numbers (arguments, or '-' to read one per line from stdin)", commands.add)
    p.add_argument("name")
    p.add_argument("values", nargs="+", metavar="VALUE", help="numbers, or - for stdin")
    p.add_argument("--batch", type=_positive_int, default=1000, help="stdin: send when this many are waiting")
    p.add_argument(
        "--flush",
        type=_positive_seconds,
        default=0.2,
        help="stdin: send this long after the first unsent value",
    )
    command("median", "the median of the live values", commands.median).add_argument("name")
    for name, run, help_text in (
        ("top", commands.top, "the k largest live values"),
        ("bottom", commands.bottom, "the k smallest live values"),
    ):
        p = command(name, help_text, run)
        p.add_argument("name")
        p.add_argument("-k", type=int, default=10)
    for name, run, help_text in (
        ("stats", commands.stats, "count, min, max, mean, stddev, median, quantiles, top/bottom at once"),
        ("watch", commands.watch, "a live view (Ctrl-C to stop); with --json, one JSON line per update"),
    ):
        p = command(name, help_text, run)
        p.add_argument("name")
        p.add_argument(
            "-q",
            "--quantile",
            dest="quantiles",
            type=_quantile,
            action="append",
            help="e.g. 0.9 or p99 (repeat)",
        )
        p.add_argument("-k", type=int, default=None, help="also show the k largest and smallest")
        p.add_argument(
            "--method",
            choices=["linear", "lower", "higher", "nearest"],
            default="linear",
            help="quantile definition",
        )
    p.add_argument("--interval", type=_positive_seconds, default=1.0, help="least time between updates")
    return parser


@dataclass
class Io:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The SDK's config from the options; a ValueError names the option at fault."""
    # An empty variable (STREAMSTATS_CA= ) means unset, as it does for most programs.
    ca, cert, key = args.ca or None, args.cert or None, args.key or None
    if (cert is None) != (key is None):
        raise ValueError("--cert and --key go together (mutual TLS): give both or neither")
    for option, path in (("--ca", ca), ("--cert", cert), ("--key", key)):
        # The SDK checks too, but would name its own field (TLSConfig.ca_file), not the option.
        if path is not None and not os.access(path, os.R_OK):
            reason = "no such file" if not os.path.exists(path) else "not readable"
            raise ValueError(f"{option} {path}: {reason}")
    tls = None
    if args.tls or ca or cert or args.server_name:
        tls = TLSConfig(ca_file=ca, cert_file=cert, key_file=key, server_name=args.server_name or None)
    return ClientConfig(timeout=args.timeout, token=args.token or None, tls=tls)


def _one_line(text: str) -> str:
    """The promise is one line on stderr: grpc's messages sometimes span several."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _exit_code(error: streamstats.StreamStatsError) -> int:
    if isinstance(error, streamstats.StreamNotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, streamstats.Unauthenticated | streamstats.PermissionDenied):
        return EXIT_DENIED
    if isinstance(error, streamstats.Unavailable | streamstats.DeadlineExceeded):
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED


def run(
    argv: Sequence[str] | None = None, io: Io | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """Run one command; returns the exit code (``main`` exits with it)."""
    io = io or Io(sys.stdin, sys.stdout, sys.stderr)
    parser = build_parser(os.environ if environ is None else environ)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        # Only here is a ValueError the user's: a mismatched --cert/--key, an unreadable file, a
        # token with spaces. Elsewhere it would be a bug, which should keep its traceback.
        client = Client(args.host, config=client_config(args))
    except (ValueError, TypeError) as error:
        io.stderr.write(f"streamstats: {_one_line(str(error))}\n")
        return EXIT_USAGE
    try:
        with client:
            code: int = args.run(client, args, io)
            return code
    except streamstats.Unavailable as error:
        io.stderr.write(f"streamstats: cannot reach the server at {args.host}: {_one_line(error.message)}\n")
        return EXIT_UNAVAILABLE
    except streamstats.DeadlineExceeded:
        io.stderr.write(f"streamstats: no answer from {args.host} within {args.timeout:g}s (--timeout)\n")
        return EXIT_UNAVAILABLE
    except streamstats.StreamStatsError as error:
        io.stderr.write(f"streamstats: {_one_line(error.message)}\n")
        return _exit_code(error)


def _silence_grpc_logs() -> None:
    """Keep grpc's own log lines (one per failed TLS handshake, ...) off the terminal.

    grpc's C core writes them straight to file descriptor 2, and reads GRPC_VERBOSITY only when grpc
    is imported, which ``import streamstats`` did before any of this code ran. So point fd 2 at
    /dev/null and give Python's ``sys.stderr`` (our messages, and a traceback should there be a bug)
    the real one. Someone who sets GRPC_VERBOSITY or GRPC_TRACE wants those lines and keeps them.
    """
    if "GRPC_VERBOSITY" in os.environ or "GRPC_TRACE" in os.environ:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no fd 2 at all (stderr closed): nothing to protect
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(real, "w", buffering=1, errors="backslashreplace")  # noqa: SIM115 (open until exit)


def main(argv: Sequence[str] | None = None) -> None:
    _silence_grpc_logs()
    if isinstance(sys.stdin, TextIOWrapper):
        # Bytes that are not text become a bad line (reported, skipped) instead of ending the input.
        sys.stdin.reconfigure(errors="replace")
    try:
        code = run(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    sys.exit(code)
