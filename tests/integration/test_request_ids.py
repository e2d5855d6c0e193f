"""Request ids on real servers, one process and front-ends + an engine, with FUSIONSERVE_LOG_FORMAT=json: every
answer carries X-Request-Id (the client's plain token, else 32 hex digits; a forged one replaced), every error
body names it in its protocol's shape, and the access line, the audit line and the engine's failure line carry
the same id as the answer (docs/request-ids.md)."""

from __future__ import annotations

import re
import time

import httpx
import orjson
import pytest

from tests.integration.multiprocess import Server
from tests.integration.test_failures_answer import FAILING_TEXT, tiny_and_failing

pytestmark = pytest.mark.slow
HEX32 = re.compile(r"[0-9a-f]{32}")
ADMIN_KEY = "admin-key-for-the-audit-test"


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "split"])
def server(request, tiny_models, tmp_path_factory):
    models = tiny_and_failing(tiny_models, tmp_path_factory.mktemp("ids") / "models")
    log = tmp_path_factory.mktemp("logs") / "server.log"
    served = Server(models, log, workers=request.param, log_format="json", access_log="true",
                    model_control="explicit", admin_key=ADMIN_KEY, max_upload_bytes=64 * 1024)  # fmt: skip
    yield served
    assert served.stop() == 0, served.tail()


def json_lines(server: Server) -> list[dict]:
    """The log's JSON lines (a child's start-up output before its logging is set up may not be JSON)."""
    found = []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            found.append(orjson.loads(line))  # every line our formatter writes must parse
    return found


def wait_for_line(server: Server, timeout_s: float = 20.0, **fields) -> dict:
    """The first JSON log line with these fields, once it has been written (the access line follows the answer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in json_lines(server):
            if all(line.get(key) == value for key, value in fields.items()):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {fields} after {timeout_s} s:\n{server.tail()}")


@pytest.mark.parametrize(("presented", "echoed"), [("client-id.42:a_b", True), ("a\tforged id", False),
                                                   ("x" * 65, False), (None, False)])  # fmt: skip
def test_a_plain_token_is_echoed_and_anything_else_replaced(server, presented, echoed):
    headers = {} if presented is None else {"X-Request-Id": presented}
    answer = httpx.get(server.url + "/v1/models", headers=headers, timeout=10)
    got = answer.headers["x-request-id"]
    assert got == presented if echoed else HEX32.fullmatch(got), got


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/healthz", 200), ("GET", "/metrics", 200), ("GET", "/v2/health/ready", 200), ("GET", "/nowhere", 404),
     ("DELETE", "/v1/models/tiny/classify", 405), ("GET", "/v2/models/nothing", 404)],
)  # fmt: skip
def test_every_answer_carries_an_id(server, method, path, status):
    answer = httpx.request(method, server.url + path, timeout=10)
    assert answer.status_code == status and HEX32.fullmatch(answer.headers["x-request-id"])


def test_each_protocols_error_body_names_the_id_and_the_access_line_carries_it(server):
    big = {"text": (None, "x" * (80 * 1024))}  # past max_upload_bytes: the body layer's 413, before any route
    v1_413 = httpx.post(server.url + "/v1/models/tiny/embed", files=big, timeout=10)
    v1_422 = httpx.post(server.url + "/v1/models/tiny/classify", files={"text": (None, "")}, timeout=10)
    v2 = httpx.post(server.url + "/v2/models/tiny/infer", json={"inputs": []}, timeout=10)
    openai = httpx.post(server.url + "/v1/embeddings", json={"model": "tiny", "input": [""]}, timeout=10)
    for answer, status in ((v1_413, 413), (v1_422, 422), (v2, 422), (openai, 422)):
        request_id = answer.headers["x-request-id"]
        body = answer.json()
        holder = body if isinstance(body["error"], str) else body["error"]  # V2: beside its message string
        assert answer.status_code == status and holder["request_id"] == request_id, body
    line = wait_for_line(server, logger="fusionserve.access", request_id=v1_422.headers["x-request-id"])
    assert (line["method"], line["path"], line["status"], line["model"]) == ("POST", "/v1/models/tiny/classify",
                                                                           422, "tiny")  # fmt: skip
    assert line["bytes"] == len(v1_422.content) and line["duration_ms"] > 0 and line["client"].startswith("127.")


def test_the_query_string_never_reaches_the_access_line(server):
    answer = httpx.get(server.url + "/v1/models", params={"token": "secret-in-the-query"}, timeout=10)
    line = wait_for_line(server, logger="fusionserve.access", request_id=answer.headers["x-request-id"])
    assert line["path"] == "/v1/models" and "secret-in-the-query" not in server.log.read_text()


def test_the_failure_line_carries_the_answers_id(server):
    answer = httpx.post(server.url + "/v1/models/boom/embed", files={"text": (None, FAILING_TEXT)}, timeout=30)
    request_id = answer.headers["x-request-id"]
    assert answer.status_code == 500 and answer.json()["error"]["request_id"] == request_id
    line = wait_for_line(server, level="ERROR", request_id=request_id)
    assert "Traceback" in line["exc_info"]
    if server.child_pids("engine"):  # split: the engine itself wrote it, under the front-end's id
        assert line["role"] == "engine" and line["logger"].startswith("fusionserve.engine"), line


def test_the_audit_line_carries_the_id_and_its_fields(server):
    answer = httpx.post(server.url + "/v2/repository/models/tiny/unload", headers={"X-Admin-Key": "wrong"}, timeout=10)
    request_id = answer.headers["x-request-id"]
    assert answer.status_code == 401 and answer.json()["request_id"] == request_id
    line = wait_for_line(server, logger="fusionserve.audit", request_id=request_id)
    assert (line["action"], line["model"], line["outcome"], line["level"]) == ("unload", "tiny", "refused (401)",
                                                                              "WARNING")  # fmt: skip
    assert line["who"].startswith("127.0.0.1:")
