"""One logging setup for every process (the one-process server, a front-end, an engine, the supervisor): the
request id of the REQUEST_ID contextvar on every record (so failure, audit and engine lines carry it), and
`FUSIONSERVE_LOG_FORMAT=json` for one JSON object a line, which log shippers (Loki, Fluent Bit, CloudWatch)
index without a parsing rule (docs/request-ids.md).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from service.errors import REQUEST_ID

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_id_text)s: %(message)s"
# LogRecord's own attributes: whatever else a record has came from `extra=` and goes into the JSON line as a field
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_OURS = frozenset({"request_id", "request_id_text", "role"})


class RequestIdFilter(logging.Filter):
    """Puts this task's request id (None outside a request) and the process's role on every record. A filter on
    the handler, not on a logger: it sees the records of every logger, uvicorn's and onnxruntime's included."""

    def __init__(self, role: str):
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # an `extra={"request_id": ...}` wins over the task's
            record.request_id = REQUEST_ID.get()
        record.request_id_text = f" [{record.request_id}]" if record.request_id else ""
        record.role = self.role
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp (ISO-8601 UTC, ms), level, logger, message, role, request_id, the
    record's `extra=` fields, and the traceback as one string field (a multi-line traceback stays one line)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": getattr(record, "role", None),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _OURS:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an extra field orjson cannot encode (a Path, an exception) is written as its text
        return orjson.dumps(line, default=str).decode()


def _utc_iso(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def configure_logging(settings, role: str) -> None:
    """The root logger of this process: one stderr handler in `settings.log_format`, at `settings.log_level`.
    Replaces any handler already there (force), so a re-configured process never writes each line twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter(role))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    # uvicorn's loggers keep their own handlers (its log config): route them through ours, one format for all
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
