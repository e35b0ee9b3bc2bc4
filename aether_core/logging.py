"""structlog, configured once by the kernel: pretty on a terminal, JSON otherwise."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {**logging.getLevelNamesMapping(), "EXCEPTION": logging.ERROR}


def _drop_below(minimum: int) -> Processor:
    """Level filtering as a processor, not a filtering wrapper class: tests that capture
    logs (``structlog.testing.capture_logs`` swaps the processors) then see every event,
    whatever level an earlier in-process CLI call configured."""

    def processor(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if _LEVELS.get(method.upper(), logging.INFO) < minimum:
            raise structlog.DropEvent
        return event

    return processor


def configure(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and the stdlib root logger; logs go to stderr, never stdout
    (where commands print what scripts read). A later call replaces the settings."""
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s", force=True)
    structlog.configure(
        processors=[
            _drop_below(numeric),
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
