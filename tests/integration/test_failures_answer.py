"""Every failure answers (one process; the engine's side: test_engine_failures.py): an onnxruntime error at run
time is a 500 in the protocol's shape naming the request id its log line carries, counted, for every caller of
the failed batch, and the next requests are served; deeply nested JSON (or protobuf) is a 4xx naming the field
and the limit in every protocol, never a 500. docs/bad-input.md rows 36 and 37."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time

import grpc
import httpx
import pytest
from google.protobuf.internal.encoder import _VarintBytes

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.manifest import read_manifest, sha256_file, write_manifest
from tests.bundles import FILES, build_bundle
from tests.integration.conftest import Gate, fast_settings, metric
from tests.integration.live import ThreadedServer, free_port
from tests.integration.request_ids import without_request_id

# "boom" is in the failing bundle's tokenizer but past its text encoder's table: onnxruntime's Gather refuses
# the token id at run time (InvalidArgument, raised by the session), while golden replay and warm-up pass
FAILING_TEXT = "cat boom"
DEPTH = 700  # nested lists: orjson reads up to 1024 levels, Python's recursion limit is ~1000 frames


def build_failing_bundle(root, name: str = "boom"):
    """A text-only bundle that loads and serves, but whose session raises for any text holding "boom"."""
    bundle = build_bundle(root, name, "1", modalities=("text",))
    tokenizer = bundle / FILES["tokenizer"]
    data = json.loads(tokenizer.read_text())
    data["model"]["vocab"]["boom"] = len(data["model"]["vocab"])  # one id past the encoder's table
    tokenizer.write_text(json.dumps(data))
    manifest = read_manifest(bundle / "manifest.json")
    files = {**manifest.files, FILES["tokenizer"]: sha256_file(tokenizer)}
    write_manifest(manifest.model_copy(update={"files": files}), bundle / "manifest.json")
    return bundle


def tiny_and_failing(tiny_models, root):
    """The tiny bundles and the failing one ("boom") under `root`."""
    shutil.copytree(tiny_models, root)
    build_failing_bundle(root)
    return root


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    return tiny_and_failing(tiny_models, tmp_path_factory.mktemp("failing") / "models")


@pytest.fixture(scope="module")
def live(models):
    settings = fast_settings(models).model_copy(update={"grpc_port": free_port()})
    with ThreadedServer(settings) as server:
        server.grpc_url = f"127.0.0.1:{settings.grpc_port}"
        yield server


def v2_body(data) -> dict:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": data}]}


def grpc_text(model: str, text: bytes) -> pb2.ModelInferRequest:
    contents = pb2.InferTensorContents(bytes_contents=[text])
    tensor = pb2.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1], contents=contents)
    return pb2.ModelInferRequest(model_name=model, inputs=[tensor])


def grpc_call(live, raw: bytes, request_id: str | None = None) -> grpc.RpcError:
    with grpc.insecure_channel(live.grpc_url) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # raw bytes both ways
        with pytest.raises(grpc.RpcError) as caught:
            infer(raw, timeout=30, metadata=[("x-request-id", request_id)] if request_id else None)
    return caught.value


def logged_with_traceback(caplog, request_id: str) -> bool:
    """A log line names the id and carries onnxruntime's exception."""
    return any(request_id in r.getMessage() and r.exc_info and "Gather" in str(r.exc_info[1]) for r in caplog.records)


def test_an_onnxruntime_error_is_a_500_naming_the_request_id_in_every_protocol(live, caplog):
    caplog.set_level(logging.ERROR)
    app, base = live.app, live.base_url
    before = metric(app, "fusionserve_requests_total", model="boom", endpoint="classify", status="500")
    v1 = httpx.post(f"{base}/v1/models/boom/classify", json={"inputs": [{"text": FAILING_TEXT}]},
                    headers={"X-Request-Id": "trace-v1"}, timeout=30)  # fmt: skip
    assert v1.status_code == 500 and v1.headers["x-request-id"] == "trace-v1"
    assert v1.json()["error"]["type"] == "internal_error" and "request id trace-v1" in v1.json()["error"]["message"]
    assert "Gather" not in v1.text  # the exception's text stays in the log
    v2 = httpx.post(f"{base}/v2/models/boom/infer", json=v2_body([FAILING_TEXT]), timeout=30)
    made = v2.headers["x-request-id"]  # none sent: one was made, and named
    assert (
        v2.status_code == 500 and without_request_id(v2) == {"error": v2.json()["error"]} and made in v2.json()["error"]
    )
    openai = httpx.post(f"{base}/v1/embeddings", json={"model": "boom", "input": FAILING_TEXT},
                        headers={"X-Request-Id": "trace-openai"}, timeout=30)  # fmt: skip
    assert openai.status_code == 500 and openai.json()["error"]["type"] == "server_error"
    assert "trace-openai" in openai.json()["error"]["message"]
    rpc = grpc_call(live, grpc_text("boom", FAILING_TEXT.encode()).SerializeToString(), "trace-grpc")
    assert rpc.code() == grpc.StatusCode.INTERNAL and "request id trace-grpc" in rpc.details()
    for request_id in ("trace-v1", made, "trace-openai", "trace-grpc"):
        assert logged_with_traceback(caplog, request_id), request_id
    assert metric(app, "fusionserve_internal_errors_total", where="http", kind="unexpected") >= 3
    assert metric(app, "fusionserve_internal_errors_total", where="grpc", kind="unexpected") >= 1
    assert metric(app, "fusionserve_requests_total", model="boom", endpoint="classify", status="500") == before + 1
    served = httpx.post(f"{base}/v1/models/boom/classify", json={"inputs": [{"text": "cat dog"}]}, timeout=30)
    assert served.status_code == 200 and served.headers["x-request-id"]


async def test_every_caller_of_a_failing_batch_gets_a_500_and_the_next_are_served(live):
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
        with Gate(live.app, "text", model="boom") as gate:
            first = asyncio.create_task(client.post("/v1/models/boom/embed", json={"inputs": [{"text": "cat"}]}))
            await asyncio.to_thread(gate.entered.wait, 30)  # the first batch computes; the next one forms
            body = {"inputs": [{"text": FAILING_TEXT}]}
            failing = [asyncio.create_task(client.post("/v1/models/boom/embed", json=body,
                                                       headers={"X-Request-Id": f"batch-{i}"}))
                       for i in range(4)]  # fmt: skip
            while metric(live.app, "fusionserve_queue_depth", model="boom", component="text") < 4:
                await asyncio.sleep(0.01)  # all four queued behind the gate: they run as one batch
            opened = time.monotonic()
            gate.open()
            answers = await asyncio.gather(*failing)
            answered_s = time.monotonic() - opened
        assert (await first).status_code == 200
        assert [a.status_code for a in answers] == [500] * 4, [a.text for a in answers]
        assert [a.headers["x-request-id"] for a in answers] == [f"batch-{i}" for i in range(4)]
        assert all(f"batch-{i}" in a.json()["error"]["message"] for i, a in enumerate(answers))
        assert answered_s < 5, answered_s  # answered at once, not at a deadline (20 s here)
        after = await client.post("/v1/models/boom/embed", json={"inputs": [{"text": "dog cat"}]})
        assert after.status_code == 200


def nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


def test_deeply_nested_json_is_a_4xx_naming_the_field_in_every_protocol(live):
    base, headers = live.base_url, {"content-type": "application/json"}
    for datatype, leaf in (("BYTES", '"cat"'), ("FP32", "1.0")):
        body = (
            f'{{"inputs": [{{"name": "text", "shape": [1], "datatype": "{datatype}", "data": {nested(DEPTH, leaf)}}}]}}'
        )
        v2 = httpx.post(f"{base}/v2/models/tiny/infer", headers=headers, content=body, timeout=30)
        assert v2.status_code == 422, v2.text
        assert "inputs[0].data" in v2.json()["error"] and "deeper than 32 levels" in v2.json()["error"]
    v1 = httpx.post(f"{base}/v1/models/tiny/classify", headers=headers, timeout=30,
                    content='{"inputs": [{"text": ' + nested(DEPTH, '"cat"') + "}]}")  # fmt: skip
    assert v1.status_code == 422 and v1.json()["error"]["field"] == "inputs[0].text"
    openai = httpx.post(f"{base}/v1/embeddings", headers=headers, timeout=30,
                        content='{"model": "tiny", "input": ' + nested(DEPTH, '"cat"') + "}")  # fmt: skip
    assert openai.status_code in (400, 422) and openai.json()["error"]["type"] == "invalid_request_error"
    # gRPC: protobuf nests messages, not lists; 700 nested groups of an unknown field pass its recursion limit
    deep = grpc_text("tiny", b"cat").SerializeToString() + _VarintBytes(100 << 3 | 3) * DEPTH
    rpc = grpc_call(live, deep + _VarintBytes(100 << 3 | 4) * DEPTH)
    assert rpc.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 100 levels" in rpc.details()
