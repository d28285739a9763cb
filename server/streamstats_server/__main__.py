"""The streamstats-server program."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

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
    log.info(
        "starting streamstats-server %s: data %s, fsync %s, TLS %s, tokens %s, limits: %d streams, "
        "%d values, %d concurrent calls",
        __version__,
        config.data_dir or "in memory",
        config.fsync.value,
        ("mutual" if config.tls_client_ca else "on") if config.tls else "off",
        "on" if config.auth_tokens else "off",
        config.max_streams,
        config.max_values,
        config.max_concurrent_rpcs,
        extra={"event": "starting", "version": __version__, "data_dir": config.data_dir, "tls": config.tls},
    )
    try:
        await server.start()
        log.info("listening on %s", server.address, extra={"event": "listening", "address": server.address})
        # On stdout too, as the one line scripts and tests wait for.
        print(f"streamstats-server listening on {server.address}", flush=True)
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
    try:
        asyncio.run(serve(config))
    except (OSError, RecoveryError, ConfigError) as exc:
        if config.log_format == "json":  # every line on stderr stays a JSON object
            log.error("cannot start: %s", exc, extra={"event": "failed"})
            sys.exit(1)
        sys.exit(f"streamstats-server: {exc}")


if __name__ == "__main__":
    main()
