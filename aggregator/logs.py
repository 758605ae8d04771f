"""Logging for the worker and beat processes: one JSON object per line (or plain text), carrying
the task id and the source, article or subscriber id of the task that wrote it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from pythonjsonlogger.json import JsonFormatter

_fields: ContextVar[dict[str, object]] = ContextVar("log_fields", default={})  # noqa: B039
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_fields(**fields: object) -> Iterator[None]:
    """Add these fields to every record logged inside the block."""
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def bind_fields(**fields: object) -> Token[dict[str, object]]:
    """Add fields until `unbind_fields(token)`: for code that opens and closes in two callbacks
    (Celery's task_prerun and task_postrun)."""
    return _fields.set({**_fields.get(), **fields})


def unbind_fields(token: Token[dict[str, object]]) -> None:
    _fields.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get().items():
            setattr(record, name, value)
        return True


def configure_logging(*, json_lines: bool, level: str) -> None:
    """Replace the root logger's handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(_json_formatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )
