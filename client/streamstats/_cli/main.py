"""Run one command: build the client, map every failure to one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import TextIOWrapper
from typing import TextIO

import streamstats
from streamstats import Client, ClientConfig, TLSConfig
from streamstats._cli.codes import (
    EXIT_DENIED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from streamstats._cli.parser import build_parser


@dataclass
class Io:
    """Where a command reads and writes: the process's streams, or a test's."""

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
