"""The command line's grammar: global options (each with an environment variable) and commands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping

from streamstats._cli import commands
from streamstats._cli.codes import (
    EXIT_DENIED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

DEFAULT_SERVER = "127.0.0.1:50051"

EPILOG = f"""\
Each option above can also be given after the command, and each has an environment variable
(the option wins): STREAMSTATS_SERVER (--host; not STREAMSTATS_HOST, which is the server's own
listen address), STREAMSTATS_TOKEN, STREAMSTATS_TLS=1, STREAMSTATS_CA, STREAMSTATS_CERT,
STREAMSTATS_KEY, STREAMSTATS_SERVER_NAME, STREAMSTATS_TIMEOUT.

exit codes:
  {EXIT_OK}    ok
  {EXIT_REFUSED}    the server refused the request (invalid argument, already exists, a limit),
       or stdin held lines that are not numbers (they were skipped)
  {EXIT_USAGE}    usage error (bad options, an unreadable certificate file)
  {EXIT_NOT_FOUND}    stream not found
  {EXIT_DENIED}    unauthenticated or permission denied (token missing, unknown or not allowed)
  {EXIT_UNAVAILABLE}    server unavailable (not running, TLS mismatch) or no answer within --timeout
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

examples:
  streamstats create api-latency --window-size 10000 --window-duration 5m
  streamstats add api-latency 12.5 8 31
  tail -f latencies.log | streamstats add api-latency -
  streamstats --json top api-latency -k 3
  streamstats stats api-latency -q p50 -q p99 -k 3
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

    parser.add_argument(
        "--host",
        default=env("STREAMSTATS_SERVER", DEFAULT_SERVER),
        help=f"server host:port (STREAMSTATS_SERVER; default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--token",
        default=env("STREAMSTATS_TOKEN"),
        help="bearer token (better: STREAMSTATS_TOKEN, which ps does not show)",
    )
    tls_default: object = argparse.SUPPRESS
    if environ is not None:
        tls_default = environ.get("STREAMSTATS_TLS", "").lower() in ("1", "true", "yes")
    parser.add_argument(
        "--tls",
        action="store_true",
        default=tls_default,
        help="connect with TLS, trusting the system's CAs unless --ca (STREAMSTATS_TLS=1)",
    )
    parser.add_argument(
        "--ca",
        default=env("STREAMSTATS_CA"),
        help="PEM file of the CA that signed the server's certificate; implies --tls",
    )
    parser.add_argument(
        "--cert",
        default=env("STREAMSTATS_CERT"),
        help="this client's PEM certificate, for mutual TLS; implies --tls",
    )
    parser.add_argument(
        "--key", default=env("STREAMSTATS_KEY"), help="this client's PEM private key, with --cert"
    )
    parser.add_argument(
        "--server-name",
        default=env("STREAMSTATS_SERVER_NAME"),
        help="the name the server's certificate must carry, if not the host's",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=env("STREAMSTATS_TIMEOUT", "10"),
        help="deadline of each call: 10, 10s, 500ms (default 10s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if environ is not None else argparse.SUPPRESS,
        help="print one JSON document on stdout (watch: one per line)",
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
    command("list", "list streams, by name (every page)", commands.list_streams).add_argument(
        "--prefix", default="", help="only names starting with this"
    )
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
        p.add_argument("-k", type=int, default=10, help="how many (default 10)")
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
