"""Log lines on stderr: human-readable by default, one JSON object per line with --log-format json.

Each record is written when it is logged, by the thread logging it (the event loop, for a failed
call's line: a write to stderr takes microseconds). A writer thread behind a queue would spare the
loop a stderr nobody reads, but would lose the last lines before a crash, the ones that explain it,
and let stderr lag the stdout line saying the server listens.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """time (RFC 3339, UTC), level, logger, message, the record's ``extra`` fields, and the
    exception's traceback as ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        return json.dumps(document, default=str)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Send every log record to stderr in ``log_format`` ("human" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
