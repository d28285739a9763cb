"""Parse the command line, run one command, map failures to one line and an exit code."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamstats",
        description="Talk to a streamstats server: streams, adds, medians, quantiles, live views.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = environ.get
    parser.add_argument("--host", default=env("STREAMSTATS_SERVER", DEFAULT_SERVER), help="server host:port")
    parser.add_argument("--token", default=env("STREAMSTATS_TOKEN"), help="bearer token (prefer the env var)")
    parser.add_argument(
        "--tls",
        action="store_true",
        default=env("STREAMSTATS_TLS", "") in ("1", "true", "yes"),
        help="use TLS",
    )
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
    parser.add_argument("--json", action="store_true", help="print one JSON document (JSON lines for watch)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
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
    p.add_argument("--batch", type=int, default=1000, help="stdin: send when this many are waiting")
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
    tls = None
    if args.tls or args.ca or args.cert or args.key or args.server_name:
        tls = TLSConfig(ca_file=args.ca, cert_file=args.cert, key_file=args.key, server_name=args.server_name)
    return ClientConfig(timeout=args.timeout, token=args.token or None, tls=tls)


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
        config = client_config(args)
        with Client(args.host, config=config) as client:
            code: int = args.run(client, args, io)
            return code
    except streamstats.Unavailable as error:
        io.stderr.write(f"streamstats: cannot reach the server at {args.host}: {error.message}\n")
        return EXIT_UNAVAILABLE
    except streamstats.DeadlineExceeded:
        io.stderr.write(f"streamstats: no answer from {args.host} within {args.timeout:g}s (--timeout)\n")
        return EXIT_UNAVAILABLE
    except streamstats.StreamStatsError as error:
        io.stderr.write(f"streamstats: {error.message}\n")
        return _exit_code(error)
    except (ValueError, TypeError) as error:  # a bad option value the SDK refused (e.g. an unreadable CA)
        io.stderr.write(f"streamstats: {error}\n")
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> None:
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
