"""The streamstats-server program."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import prometheus_client

from streamstats_server import __version__
from streamstats_server.app import StreamStatsServer
from streamstats_server.config import ConfigError, ServerConfig, parse_config
from streamstats_server.observability.logs import configure_logging
from streamstats_server.storage import RecoveryError

log = logging.getLogger("streamstats.server")


async def serve(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking calls and let those in flight finish."""
    server = StreamStatsServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tls = ("mutual" if config.tls_client_ca else "on") if config.tls else "off"
    log.info(
        "starting streamstats-server %s: data %s, fsync %s, TLS %s, tokens %s, limits: %d streams, "
        "%d values, %d concurrent calls (0: no limit)",
        __version__,
        config.data_dir or "in memory",
        config.fsync.value,
        tls,
        "on" if config.auth_tokens else "off",
        config.max_streams,
        config.max_values,
        config.max_concurrent_rpcs,
        extra={
            "event": "starting",
            "version": __version__,
            "data_dir": config.data_dir,
            "fsync": config.fsync.value,
            "tls": tls,
            "tokens": bool(config.auth_tokens),  # whether, never which
            "max_streams": config.max_streams,
            "max_values": config.max_values,
            "max_concurrent_rpcs": config.max_concurrent_rpcs,
        },
    )
    try:
        await server.start()
        log.info("listening on %s", server.address, extra={"event": "listening", "address": server.address})
        # On stdout too, as the one line scripts and tests wait for.
        print(f"streamstats-server listening on {server.address}", flush=True)
        if server.metrics_url is not None:  # second, so that the line above stays the first
            print(f"streamstats-server metrics on {server.metrics_url}", flush=True)
        await stop.wait()
        log.info(
            "stopping: finishing calls in flight (up to %gs)",
            config.grace_seconds,
            extra={"event": "stopping"},
        )
    finally:
        await server.stop(config.grace_seconds)
    log.info("stopped", extra={"event": "stopped"})


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    configure_logging(config.log_format)
    # Go's client (whose metric names we serve) has no *_created series; they would double every
    # scrape. Process-wide, so set by the program, not by each (in tests, in-process) server.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    try:
        asyncio.run(serve(config))
    except (OSError, RecoveryError, ConfigError) as exc:
        if config.log_format == "json":  # every line on stderr stays a JSON object
            log.error("cannot start: %s", exc, extra={"event": "failed"})
            sys.exit(1)
        sys.exit(f"streamstats-server: {exc}")


if __name__ == "__main__":
    main()
