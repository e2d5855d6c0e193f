"""service/logs.py: every record carries the request id of the task that wrote it; the JSON format is one object a
line with the record's fields; a JSON error body gets the id in its protocol's place (api/request_id.py)."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest

from service import logs
from service.errors import REQUEST_ID
from service.frontend.api.request_id import with_request_id
from service.settings import load_settings


@pytest.fixture
def capture():
    """A handler configured as configure_logging configures the root's, writing to a buffer; and the logger."""

    def make(log_format: str, role: str = "engine"):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(logs.RequestIdFilter(role))
        handler.setFormatter(logs.JsonFormatter() if log_format == "json" else logging.Formatter(logs.TEXT_FORMAT))
        logger = logging.getLogger(f"test.logs.{log_format}")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        made.append((logger, handler))
        return logger, stream

    made = []
    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_the_tasks_request_id_and_the_records_fields(capture):
    logger, stream = capture("json")

    async def call(request_id: str) -> None:  # as the engine runs each call: its own task, REQUEST_ID set in it
        REQUEST_ID.set(request_id)
        await asyncio.sleep(0)  # the other call runs here: its id must not leak into this one's line
        logger.info("model %s: call done", "tiny", extra={"model": "tiny", "items": 2})

    async def both() -> None:
        await asyncio.gather(call("a" * 32), call("b" * 32))

    asyncio.run(both())
    logger.info("outside any request")
    first, second, outside = lines(stream)
    assert {first["request_id"], second["request_id"]} == {"a" * 32, "b" * 32}
    assert first["message"] == "model tiny: call done" and first["model"] == "tiny" and first["items"] == 2
    assert first["level"] == "INFO" and first["logger"] == "test.logs.json" and first["role"] == "engine"
    assert first["timestamp"].endswith("Z") and first["timestamp"][10] == "T"
    assert outside["request_id"] is None


def test_a_traceback_stays_one_json_line_as_a_string_field(capture):
    logger, stream = capture("json")
    try:
        raise RuntimeError("onnxruntime said no")
    except RuntimeError:
        logger.exception("request id %s: unexpected error", "c" * 32, extra={"request_id": "c" * 32})
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["request_id"] == "c" * 32  # extra= names it where no contextvar is set (the engine's repository)
    assert "RuntimeError: onnxruntime said no" in line["exc_info"] and "Traceback" in line["exc_info"]


def test_an_extra_field_json_cannot_encode_is_written_as_its_text(capture, tmp_path):
    logger, stream = capture("json")
    logger.info("bundle read", extra={"path": tmp_path})
    assert lines(stream)[0]["path"] == str(tmp_path)


def test_the_text_format_names_the_request_id_only_inside_a_request(capture):
    logger, stream = capture("text")
    logger.info("no request")
    token = REQUEST_ID.set("d" * 32)
    try:
        logger.info("in a request")
    finally:
        REQUEST_ID.reset(token)
    outside, inside = stream.getvalue().splitlines()
    assert outside.endswith("INFO test.logs.text: no request")
    assert inside.endswith(f"INFO test.logs.text [{'d' * 32}]: in a request")


def test_configure_logging_replaces_the_root_handler_and_reads_the_settings(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setenv("FUSIONSERVE_LOG_FORMAT", "json")
    try:
        settings = load_settings()
        assert settings.log_format == "json" and settings.access_log is True
        logs.configure_logging(settings, "front-end")
        logs.configure_logging(settings, "front-end")  # twice: still one handler, never each line twice
        (handler,) = root.handlers
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert logging.getLogger("uvicorn.error").propagate and not logging.getLogger("uvicorn.error").handlers
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_a_bad_log_format_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("FUSIONSERVE_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit, match="FUSIONSERVE_LOG_FORMAT.*text.*json"):
        load_settings()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"type": "t", "message": "m", "field": None}}, {"error": {"type": "t", "message": "m",
                                                                              "field": None, "request_id": "r"}}),
        ({"error": "m"}, {"error": "m", "request_id": "r"}),  # KServe V2: beside its string
        ({"error": {"message": "m", "type": "t", "param": None, "code": "c"}},
         {"error": {"message": "m", "type": "t", "param": None, "code": "c", "request_id": "r"}}),
    ],
)  # fmt: skip
def test_an_error_body_gets_the_id_in_its_protocols_place(body, expected):
    assert orjson.loads(with_request_id(orjson.dumps(body), "r")) == expected


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"detail": "x"}'])
def test_a_body_that_is_no_error_object_is_left_alone(body):
    assert with_request_id(body, "r") is None
