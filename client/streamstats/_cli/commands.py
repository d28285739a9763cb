"""One function per command: ``(client, args, io) -> exit code``."""

from __future__ import annotations

import argparse
import math
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from streamstats import Client, Stats, Stream, StreamStatsError
from streamstats._cli import render
from streamstats._cli.codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE

if TYPE_CHECKING:
    from streamstats._cli.main import Io


def create(client: Client, args: argparse.Namespace, io: Io) -> int:
    stream = client.create_stream(
        args.name, window_size=args.window_size, window_duration=args.window_duration
    )
    return _show_streams([stream], args, io, single=True)


def get(client: Client, args: argparse.Namespace, io: Io) -> int:
    return _show_streams([client.get_stream(args.name)], args, io, single=True)


def list_streams(client: Client, args: argparse.Namespace, io: Io) -> int:
    return _show_streams(list(client.list_streams(args.prefix)), args, io, single=False)


def _show_streams(streams: list[Stream], args: argparse.Namespace, io: Io, *, single: bool) -> int:
    if args.json:
        documents = [render.stream_json(s) for s in streams]
        render.dump_json(documents[0] if single else documents, io.stdout)
    elif streams:
        render.table([render.STREAM_HEADER, *map(render.stream_row, streams)], io.stdout)
    else:
        io.stderr.write("(no streams)\n")
    return EXIT_OK


def delete(client: Client, args: argparse.Namespace, io: Io) -> int:
    client.delete_stream(args.name)
    if args.json:
        render.dump_json({"deleted": args.name}, io.stdout)
    else:
        io.stdout.write(f"deleted {args.name}\n")
    return EXIT_OK


def add(client: Client, args: argparse.Namespace, io: Io) -> int:
    if args.values == ["-"]:
        return _add_from_stdin(client, args, io)
    if "-" in args.values:
        io.stderr.write("streamstats: '-' (read stdin) must be the only value\n")
        return EXIT_USAGE
    numbers = []
    for index, text in enumerate(args.values):
        number = _parse_number(text)
        if number is None:
            io.stderr.write(
                f"streamstats: value {index + 1} {text!r} is not a finite number; nothing was added\n"
            )
            return EXIT_REFUSED
        numbers.append(number)
    result = client.add_many(args.name, numbers)
    if args.json:
        render.dump_json({"stream": args.name, "added": len(numbers), **render.add_json(result)}, io.stdout)
    else:
        io.stdout.write(
            f"added {len(numbers)} to {args.name}: {result.count} live, {result.total_added} in total\n"
        )
    return EXIT_OK


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_END = None  # what the stdin reader puts on the queue at end of input


def _add_from_stdin(client: Client, args: argparse.Namespace, io: Io) -> int:
    """Lines from stdin, batched: sent when ``--batch`` values wait or ``--flush`` seconds after the
    first unsent one, so ``tail -f`` output shows up promptly while a big file goes in big batches.

    A reader thread feeds a queue because a blocking readline cannot also wait for a timer."""
    lines: queue.Queue[tuple[int, str] | None] = queue.Queue(maxsize=100_000)
    read_errors: list[OSError] = []

    def read() -> None:
        try:
            for number, line in enumerate(io.stdin, 1):
                lines.put((number, line))
        except OSError as error:  # e.g. EIO from a terminal that went away: stop as at the end
            read_errors.append(error)
        finally:
            lines.put(_END)

    threading.Thread(target=read, name="streamstats-stdin", daemon=True).start()
    batch: list[float] = []
    first_at = 0.0
    sent = bad = 0
    done = False
    while not done:
        wait = None if not batch else max(0.0, first_at + args.flush - time.monotonic())
        try:
            item = lines.get(timeout=wait)
        except queue.Empty:  # the flush timer went off: send below
            item = (0, "")
        if item is _END:
            done = True
        else:
            number, line = item
            text = line.strip()
            if text:
                value = _parse_number(text)
                if value is None:
                    bad += 1
                    io.stderr.write(
                        f"streamstats: line {number}: {text[:80]!r} is not a finite number; skipped\n"
                    )
                else:
                    if not batch:
                        first_at = time.monotonic()
                    batch.append(value)
        due = batch and (done or len(batch) >= args.batch or time.monotonic() >= first_at + args.flush)
        if due:
            try:
                client.add_many(args.name, batch)
            except StreamStatsError as error:
                if not sent:
                    raise
                # After a long ``tail -f`` the user needs to know what did arrive.
                raise type(error)(
                    f"{error.message} ({sent} earlier values from stdin were added)", code=error.code
                ) from error
            sent += len(batch)
            batch = []
    for read_error in read_errors:
        io.stderr.write(f"streamstats: cannot read stdin: {read_error.strerror or read_error}\n")
    if args.json:
        render.dump_json({"stream": args.name, "added": sent, "skipped": bad}, io.stdout)
    else:
        io.stdout.write(f"added {sent} to {args.name}" + (f"; skipped {bad} bad lines" if bad else "") + "\n")
    return EXIT_REFUSED if bad or read_errors else EXIT_OK


def median(client: Client, args: argparse.Namespace, io: Io) -> int:
    value = client.median(args.name)
    if args.json:
        render.dump_json({"stream": args.name, "median": value}, io.stdout)
    else:
        io.stdout.write(("(no live values)" if value is None else render.number(value)) + "\n")
    return EXIT_OK


def top(client: Client, args: argparse.Namespace, io: Io) -> int:
    return _show_values(client.top_k(args.name, args.k), args, io)


def bottom(client: Client, args: argparse.Namespace, io: Io) -> int:
    return _show_values(client.bottom_k(args.name, args.k), args, io)


def _show_values(values: list[float], args: argparse.Namespace, io: Io) -> int:
    if args.json:
        render.dump_json({"stream": args.name, "values": values}, io.stdout)
    else:
        io.stdout.writelines(render.number(v) + "\n" for v in values)
    return EXIT_OK


def _query(args: argparse.Namespace, default_k: int) -> tuple[list[float], int]:
    quantiles = args.quantiles if args.quantiles is not None else [0.9, 0.99]
    return quantiles, default_k if args.k is None else args.k


def stats(client: Client, args: argparse.Namespace, io: Io) -> int:
    quantiles, k = _query(args, 0)
    result = client.stats(args.name, quantiles=quantiles, method=args.method, k=k)
    if args.json:
        render.dump_json({"stream": args.name, **render.stats_json(result)}, io.stdout)
    else:
        io.stdout.writelines(line + "\n" for line in render.stats_lines(result))
    return EXIT_OK


SPARK_SECONDS = 60.0


def watch(client: Client, args: argparse.Namespace, io: Io) -> int:
    """Follow a stream until Ctrl-C. On a terminal: redraw in place, with a sparkline of the median
    over the last minute. Otherwise (or with --json): one line per update."""
    quantiles, k = _query(args, 5)
    updates = client.watch(
        args.name, quantiles=quantiles, method=args.method, k=k, min_interval=args.interval
    )
    live = io.stdout.isatty() and not args.json
    history: deque[tuple[float, float]] = deque()
    drawn = 0
    with updates:
        try:
            for update in updates:
                if args.json:
                    render.dump_json(
                        {"stream": args.name, "changes": update.changes, **render.stats_json(update.stats)},
                        io.stdout,
                    )
                    io.stdout.flush()
                    continue
                now = time.monotonic()
                if update.stats.median is not None:
                    history.append((now, update.stats.median))
                while history and history[0][0] < now - SPARK_SECONDS:
                    history.popleft()
                lines = _watch_lines(args.name, update.stats, [m for _, m in history])
                if live:
                    # Move up over the previous frame, clear each line before writing the new one, and
                    # clear whatever is left below (a frame can shrink).
                    io.stdout.write(
                        "\x1b[F" * drawn + "".join(f"\x1b[2K{line}\n" for line in lines) + "\x1b[J"
                    )
                    drawn = len(lines)
                else:
                    io.stdout.write(" | ".join(lines[:4]) + "\n")
                io.stdout.flush()
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return EXIT_OK


def _watch_lines(name: str, stats: Stats, medians: list[float]) -> list[str]:
    header = f"{name}   {stats.time.strftime('%H:%M:%S')}"
    lines = [header, *render.stats_lines(stats)]
    if medians:
        lines.append(f"median, last minute  {render.sparkline(medians[-60:])}")
    return lines
