"""A real server on loopback (uvicorn in a thread, gRPC on a port of its own) serving `clips`, a bundle with image,
text, audio and video encoders (tests/bundles.py), and one reader per protocol that sends a text + video item
with the request's segmentation and reads its segments back as `Segments`, so the video tests say once what
every protocol must answer."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx
import numpy as np
import openai
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.integration.protocols import Refusal, tensors

MODEL = "clips"
TEXT = "a clip of two digits"


@dataclass
class Segments:
    """One video item's answer, whatever protocol carried it."""

    bounds: np.ndarray  # [G,2]
    fused: np.ndarray  # [G,D]
    clip_fused: np.ndarray  # [D]


def v1_embed(base_url: str, video: bytes, **options) -> Segments | Refusal:
    files = {"video": ("clip.mp4", video, "video/mp4"), "text": (None, TEXT)}
    response = httpx.post(f"{base_url}/v1/models/{MODEL}/embed", files=files, params=options, timeout=60)
    if response.status_code != 200:
        error = response.json()["error"]
        return Refusal(str(response.status_code), error["message"], error["field"])
    (result,) = response.json()["results"]
    segments = result["segments"]
    return Segments(np.array([[s["start_s"], s["end_s"]] for s in segments]), np.array([s["fused"] for s in segments]),
                    np.array(result["fused"]))  # fmt: skip


def _v2_result(result) -> Segments:
    items = result.as_numpy("segment_item")
    assert items.tolist() == [1] * len(items)  # row 0 is text only: every segment is row 1's
    return Segments(result.as_numpy("segment_bounds"), result.as_numpy("segment_fused_embedding"),
                    result.as_numpy("fused_embedding")[1])  # fmt: skip


def v2_rows(module, video: bytes) -> list:
    """Two rows: a text alone, then the text with the video (so segment_item must say row 1)."""
    return tensors(module, [{"text": TEXT}, {"text": TEXT, "video": video}], ("text", "video"))


def v2_rest(base_url: str, video: bytes, **options) -> Segments | Refusal:
    with triton_http.InferenceServerClient(base_url.removeprefix("http://"), network_timeout=60) as client:
        try:
            return _v2_result(client.infer(MODEL, v2_rows(triton_http, video), parameters=options or None))
        except InferenceServerException as error:
            return Refusal(error.status(), error.message())


def v2_grpc(grpc_url: str, video: bytes, **options) -> Segments | Refusal:
    with triton_grpc.InferenceServerClient(grpc_url) as client:
        try:
            return _v2_result(client.infer(MODEL, v2_rows(triton_grpc, video), parameters=options or None))
        except InferenceServerException as error:
            return Refusal(error.status().removeprefix("StatusCode."), error.message())


def openai_embed(base_url: str, video: bytes, **options) -> Segments | Refusal:
    url = "data:video/mp4;base64," + base64.b64encode(video).decode()
    parts = [{"type": "text", "text": TEXT}, {"type": "video_url", "video_url": {"url": url}}]
    with openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0) as sdk:
        try:
            answer = sdk.embeddings.create(model=MODEL, input=[parts], encoding_format="float", extra_body=options)
        except openai.APIStatusError as error:
            return Refusal(str(error.status_code), error.body["message"], error.body["param"])
    (entry,) = answer.data
    segments = entry.segments  # an extra field: the SDK's models keep what they do not declare
    return Segments(np.array([[s["start_s"], s["end_s"]] for s in segments]),
                    np.array([s["embedding"] for s in segments]), np.array(entry.embedding))  # fmt: skip


class Reader:
    """One protocol's `read(server, video, **options)`."""

    def __init__(self, name: str, read, grpc: bool = False):
        self.name, self.read, self.grpc = name, read, grpc

    def __call__(self, server, video: bytes, **options) -> Segments | Refusal:
        return self.read(server.grpc_url if self.grpc else server.base_url, video, **options)


READERS = [Reader("v1", v1_embed), Reader("v2_rest", v2_rest), Reader("v2_grpc", v2_grpc, grpc=True),
           Reader("openai", openai_embed)]  # fmt: skip
READER_IDS = [reader.name for reader in READERS]
