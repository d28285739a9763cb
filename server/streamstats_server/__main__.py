"""The streamstats-server program."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from streamstats_server.app import StreamStatsServer
from streamstats_server.config import ConfigError, ServerConfig, parse_config
from streamstats_server.storage import RecoveryError


async def serve(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking calls and let those in flight finish."""
    server = StreamStatsServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        print(f"streamstats-server listening on {server.address}", flush=True)
        await stop.wait()
        print("streamstats-server stopping: finishing calls in flight", file=sys.stderr, flush=True)
    finally:
        await server.stop(config.grace_seconds)


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(config))
    except (OSError, RecoveryError, ConfigError) as exc:
        sys.exit(f"streamstats-server: {exc}")


if __name__ == "__main__":
    main()
