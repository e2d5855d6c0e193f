"""One set of helpers for the behaviours every protocol shares, against a real server on loopback: one adapter
per protocol (v1 JSON over httpx, KServe V2 REST with tritonclient.http, KServe V2 gRPC with tritonclient.grpc,
OpenAI with the openai SDK) that sends texts or a bad image and reads the answer back as one `Refusal`, so a
test says once what must hold and is parametrised over `PROTOCOLS`. `Target.of` takes an in-process server
(live.ThreadedServer) or a process tree (multiprocess.Server)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import Gate

# the gRPC code each HTTP status is answered with; any other 4xx is INVALID_ARGUMENT
GRPC_CODES = {404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE",
              504: "DEADLINE_EXCEEDED"}  # fmt: skip


@dataclass(frozen=True)
class Target:
    base_url: str
    grpc_url: str
    port: int
    app: object | None  # the app, where it runs in this process (a Gate can hold its encoders)

    @classmethod
    def of(cls, server) -> Target:
        return cls(getattr(server, "base_url", None) or server.url, server.grpc_url, server.port,
                   getattr(server, "app", None))  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    status: str  # the HTTP status ("504") or the gRPC code's name ("DEADLINE_EXCEEDED")
    message: str
    kind: str | None = None  # the error's type or code, where the protocol's shape has one


def refused(call) -> InferenceServerException:
    """tritonclient (http or grpc) raised; the exception it raised."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def openai_refused(error_class, call) -> dict:
    """The SDK raised `error_class`; returns the OpenAI error object it parsed from the body."""
    with pytest.raises(error_class) as caught:
        call()
    body = caught.value.body
    assert body.pop("request_id") == caught.value.response.headers["x-request-id"], body  # docs/request-ids.md
    assert set(body) == {"message", "type", "param", "code"}, body
    return body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class HttpJson:
    """What the HTTP protocols share: a JSON body to a path; `raw_post` sends it over a bare socket."""

    name = endpoint = path = ""

    def status(self, http: int) -> str:
        return str(http)

    def body(self, texts: list[str], model: str = "tiny") -> dict:
        raise NotImplementedError

    def blocker(self, target: Target) -> None:
        httpx.post(target.base_url + self.path.format(model="tiny"), json=self.body(["one two"]), timeout=30)

    @contextmanager
    def queued_then_gone(self, target: Target, texts: list[str]):
        """Inside: the request was sent and is being served; at the end its connection closes."""
        body = json.dumps(self.body(texts))
        head = (f"POST {self.path.format(model='tiny')} HTTP/1.1\r\nHost: fusionserve\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}")  # fmt: skip
        with socket.create_connection(("127.0.0.1", target.port)) as sock:
            sock.sendall((head + "\r\n\r\n" + body).encode())
            yield


class V1(HttpJson):
    name, endpoint, path = "v1", "embed", "/v1/models/{model}/embed"
    image_field = "inputs[1].image"
    deadlines = ("header",)

    def body(self, texts, model="tiny"):
        return {"inputs": [{"text": text} for text in texts]}

    def texts(self, target, texts, model="tiny", deadline=None) -> Refusal | np.ndarray:
        headers = {"x-request-timeout-ms": "200"} if deadline == "header" else {}
        response = httpx.post(target.base_url + self.path.format(model=model), json=self.body(texts),
                              headers=headers, timeout=30)  # fmt: skip
        if response.status_code == 200:
            return np.array([result["fused"] for result in response.json()["results"]])
        error = response.json()["error"]
        return Refusal(str(response.status_code), error["message"], error["type"])

    def image_row(self, target, image: bytes) -> Refusal:
        body = {"inputs": [{"text": "one two"}, {"image": b64(image)}]}
        response = httpx.post(target.base_url + "/v1/models/tiny/classify", json=body, timeout=30)
        error = response.json()["error"]
        return Refusal(str(response.status_code), error["message"], error["type"])

    def invalid(self, target) -> Refusal:
        return self.texts(target, [" "])


class V2Rest(HttpJson):
    name, endpoint, path = "v2_rest", "v2_infer", "/v2/models/{model}/infer"
    image_field = "image[1]"
    deadlines = ("header", "timeout_parameter")

    def body(self, texts, model="tiny"):
        return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}

    def _infer(self, target, model, inputs, **kw) -> Refusal | np.ndarray:
        with triton_http.InferenceServerClient(target.base_url.removeprefix("http://"), network_timeout=30) as client:
            try:
                return client.infer(model, inputs, **kw).as_numpy("fused_embedding")
            except InferenceServerException as error:
                return Refusal(error.status(), error.message())

    def texts(self, target, texts, model="tiny", deadline=None) -> Refusal | np.ndarray:
        kw = {"headers": {"x-request-timeout-ms": "200"}} if deadline == "header" else {}
        kw |= {"timeout": 200_000} if deadline == "timeout_parameter" else {}  # Triton's timeout parameter, µs
        return self._infer(target, model, tensors(triton_http, [{"text": t} for t in texts], ["text"]), **kw)

    def image_row(self, target, image: bytes) -> Refusal:
        return self._infer(target, "tiny", tensors(triton_http, [{"text": "one two"}, {"image": image}]))

    def invalid(self, target) -> Refusal:
        return self._infer(target, "tiny", [fp32_image(triton_http)])


class V2Grpc:
    name, endpoint = "v2_grpc", "v2_grpc_infer"
    image_field = "image[1]"
    deadlines = ("grpc_deadline", "timeout_parameter")

    def status(self, http: int) -> str:
        return GRPC_CODES.get(http, "INVALID_ARGUMENT")

    def _infer(self, target, model, inputs, **kw) -> Refusal | np.ndarray:
        with triton_grpc.InferenceServerClient(target.grpc_url) as client:
            try:
                return client.infer(model, inputs, **kw).as_numpy("fused_embedding")
            except InferenceServerException as error:
                return Refusal(error.status().removeprefix("StatusCode."), error.message())

    def texts(self, target, texts, model="tiny", deadline=None) -> Refusal | np.ndarray:
        kw = {"client_timeout": 0.3} if deadline == "grpc_deadline" else {}
        kw |= {"timeout": 200_000} if deadline == "timeout_parameter" else {}
        return self._infer(target, model, tensors(triton_grpc, [{"text": t} for t in texts], ["text"]), **kw)

    def image_row(self, target, image: bytes) -> Refusal:
        return self._infer(target, "tiny", tensors(triton_grpc, [{"text": "one two"}, {"image": image}]))

    def invalid(self, target) -> Refusal:
        return self._infer(target, "tiny", [fp32_image(triton_grpc)])

    def blocker(self, target: Target) -> None:  # a client of its own: tritonclient's belong to their thread
        self.texts(target, ["one two"])

    @contextmanager
    def queued_then_gone(self, target: Target, texts: list[str]):
        with triton_grpc.InferenceServerClient(target.grpc_url) as client:
            call = client.async_infer("tiny", tensors(triton_grpc, [{"text": t} for t in texts], ["text"]),
                                      lambda *_: None)  # fmt: skip
            yield
            call.cancel()


class OpenAI(HttpJson):
    name, endpoint, path = "openai", "openai_embeddings", "/v1/embeddings"
    image_field = "input[0][1].image_url"
    deadlines = ("header",)

    def body(self, texts, model="tiny"):
        return {"model": model, "input": texts}

    def _create(self, target, **kw) -> Refusal | np.ndarray:
        with openai.OpenAI(base_url=target.base_url + "/v1", api_key="unused", max_retries=0) as sdk:
            try:
                answer = sdk.embeddings.create(**kw)
            except openai.APIStatusError as error:
                assert error.body["request_id"] == error.response.headers["x-request-id"], error.body
                assert set(error.body) == {"message", "type", "param", "code", "request_id"}, error.body
                return Refusal(str(error.status_code), error.body["message"], error.body["code"])
        return np.array([entry.embedding for entry in sorted(answer.data, key=lambda e: e.index)])

    def texts(self, target, texts, model="tiny", deadline=None) -> Refusal | np.ndarray:
        headers = {"x-request-timeout-ms": "200"} if deadline == "header" else None
        return self._create(target, model=model, input=texts, extra_headers=headers)

    def image_row(self, target, image: bytes) -> Refusal:
        url = "data:image/png;base64," + b64(image)
        parts = [{"type": "text", "text": "one two"}, {"type": "image_url", "image_url": {"url": url}}]
        return self._create(target, model="tiny", input=[parts])

    def invalid(self, target) -> Refusal:
        return self._create(target, model="tiny", input=["one", " "])


PROTOCOLS = [V1(), V2Rest(), V2Grpc(), OpenAI()]
IDS = [p.name for p in PROTOCOLS]
DEADLINE_WAYS = [(p, way) for p in PROTOCOLS for way in p.deadlines]


def tensors(client_module, rows: list[dict], modalities=("image", "text", "audio")) -> list:
    """One BYTES tensor per modality (b"" where a row lacks it), in tritonclient.http's or .grpc's types."""
    inputs = []
    for modality in modalities:
        values = [row.get(modality, b"") for row in rows]
        tensor = client_module.InferInput(modality, [len(rows)], "BYTES")
        tensor.set_data_from_numpy(np.array([v.encode() if isinstance(v, str) else v for v in values], np.object_))
        inputs.append(tensor)
    return inputs


def fp32_image(client_module):
    """An FP32 `image` tensor (the server wants BYTES), as tritonclient.http or tritonclient.grpc builds it."""
    tensor = client_module.InferInput("image", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), np.float32))
    return tensor


def v1_error(target: Target, item: dict) -> dict:
    """v1's answer to one item alone: the reference the other protocols' messages are judged against."""
    response = httpx.post(target.base_url + "/v1/models/tiny/classify", json={"inputs": [item]}, timeout=30)
    return {"status": response.status_code, **response.json()["error"]}


@contextmanager
def text_encoder_busy(target: Target, protocol):
    """One request of `protocol` holds the text encoder in ORT (an in-process server only), so the next text
    items wait in its queue."""
    blocker = threading.Thread(target=protocol.blocker, args=(target,), daemon=True)
    with Gate(target.app, "text") as gate:
        blocker.start()
        assert gate.entered.wait(30), "the blocking request never reached the text encoder"
        yield gate
        gate.open()
    blocker.join(30)
