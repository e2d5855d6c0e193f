"""OpenAI-compatible `POST /v1/embeddings`, proven with the official `openai` SDK against a real server on
loopback: strings and multimodal content arrays equal v1 /embed's fused vectors, base64 output, usage from the
bundle's tokenizer, and bad input → the SDK's exception classes with an OpenAI-shaped body naming the param.
Counting and undecodable images, as every protocol does them: test_protocols.py."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import openai
import pytest

from tests import media
from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer
from tests.integration.protocols import b64
from tests.integration.protocols import openai_refused as refused

MAX_ITEMS = 4
SUBSETS = {"image+text": ("image", "text"), "audio": ("audio",), "all": ("image", "text", "audio")}


@pytest.fixture(scope="module")
def live(tiny_models):
    with ThreadedServer(fast_settings(tiny_models, max_items_per_request=MAX_ITEMS)) as server:
        yield server


@pytest.fixture(scope="module")
def sdk(live):
    with openai.OpenAI(base_url=live.base_url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


def content(item: dict) -> list[dict]:
    """A raw item {"image": PNG bytes, "audio": WAV bytes, "text": str} as an OpenAI content array."""
    parts = []
    if "text" in item:
        parts.append({"type": "text", "text": item["text"]})
    if "image" in item:
        parts.append({"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(item["image"])}})
    if "audio" in item:
        parts.append({"type": "input_audio", "input_audio": {"data": b64(item["audio"]), "format": "wav"}})
    return parts


def v1_fused(live, items: list[dict]) -> np.ndarray:
    inputs = [{m: v if m == "text" else b64(v) for m, v in item.items()} for item in items]
    response = httpx.post(live.base_url + "/v1/models/tiny/embed", json={"inputs": inputs}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array([result["fused"] for result in response.json()["results"]])


def vectors(response) -> np.ndarray:
    return np.array([entry.embedding for entry in sorted(response.data, key=lambda e: e.index)])


def token_count(live, *texts: str) -> int:
    tokenizer = live.app.state.context.registry.get("tiny").bundle.tokenizer
    return sum(len(tokenizer.encode(text, add_special_tokens=True).ids) for text in texts)


def test_strings_equal_v1_text_embeddings_and_usage_counts_tokens(live, sdk):
    texts = ["one two", "three and four", "zero"]
    single = sdk.embeddings.create(model="tiny", input=texts[0])
    assert [e.index for e in single.data] == [0] and single.object == "list" and single.model == "tiny:1"
    batch = sdk.embeddings.create(model="tiny", input=texts, encoding_format="float")
    expected = v1_fused(live, [{"text": t} for t in texts])
    np.testing.assert_allclose(vectors(batch), expected, atol=1e-5)
    np.testing.assert_allclose(vectors(single)[0], expected[0], atol=1e-5)  # sent as base64 by the SDK, decoded
    assert batch.usage.prompt_tokens == batch.usage.total_tokens == token_count(live, *texts)
    assert single.usage.prompt_tokens == token_count(live, texts[0])


@pytest.mark.parametrize("subset", SUBSETS.values(), ids=SUBSETS.keys())
def test_content_arrays_get_the_fused_embedding_of_v1(live, sdk, subset):
    items = [{m: sample_inputs(seed=20 + i)[m] for m in subset} for i in range(2)]
    response = sdk.embeddings.create(model="tiny:1", input=[content(item) for item in items])
    assert response.model == "tiny:1" and [e.index for e in response.data] == [0, 1]
    np.testing.assert_allclose(vectors(response), v1_fused(live, items), atol=1e-5)
    texts = [item["text"] for item in items if "text" in item]
    assert response.usage.prompt_tokens == token_count(live, *texts)  # 0 without text parts


def test_a_string_and_a_content_array_in_one_list(live, sdk):
    image = sample_inputs(seed=3)["image"]
    response = sdk.embeddings.create(model="tiny", input=["three", content({"image": image})])
    np.testing.assert_allclose(vectors(response), v1_fused(live, [{"text": "three"}, {"image": image}]), atol=1e-5)


def test_base64_is_little_endian_float32_and_what_the_sdk_asks_for(sdk):
    floats = sdk.embeddings.create(model="tiny", input="two", encoding_format="float").data[0].embedding
    raw = sdk.embeddings.with_raw_response.create(model="tiny", input="two", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), floats, atol=1e-6)
    default = sdk.embeddings.with_raw_response.create(model="tiny", input="two")  # no encoding_format given
    assert b'"encoding_format":"base64"' in default.http_request.content.replace(b" ", b"")
    np.testing.assert_allclose(default.parse().data[0].embedding, floats, atol=1e-6)  # the SDK decoded it


def test_dimensions_the_model_was_not_trained_for_are_422_naming_the_supported_ones(sdk):
    assert len(sdk.embeddings.create(model="tiny", input="one", dimensions=8).data[0].embedding) == 8
    body = refused(
        openai.UnprocessableEntityError, lambda: sdk.embeddings.create(model="tiny", input="one", dimensions=3)
    )
    assert body["param"] == "dimensions" and "(supported: 8)" in body["message"]
    assert "dimensions 3" in body["message"] and "truncate='force'" in body["message"]


def test_unknown_model_or_version_is_not_found(sdk):
    body = refused(openai.NotFoundError, lambda: sdk.embeddings.create(model="nope", input="one"))
    assert (body["param"], body["code"]) == ("model", "model_not_found")
    assert body["message"].startswith("model 'nope' not found")
    body = refused(openai.NotFoundError, lambda: sdk.embeddings.create(model="tiny:7", input="one"))
    assert body["param"] == "model" and "no servable version '7'" in body["message"]


def test_remote_urls_are_refused_without_an_allow_list(sdk):
    parts = [{"type": "text", "text": "one"}, {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}]
    body = refused(openai.UnprocessableEntityError, lambda: sdk.embeddings.create(model="tiny", input=[parts]))
    assert body["param"] == "input[0][1].image_url" and "FUSIONSERVE_URL_ALLOW_HOSTS" in body["message"]
    assert "'10.0.0.1' is not allowed" in body["message"]


def test_too_many_items_is_413_naming_the_limit(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.embeddings.create(model="tiny", input=["one"] * (MAX_ITEMS + 1))
    assert caught.value.status_code == 413 and caught.value.body["param"] == "input"
    assert f"the limit is {MAX_ITEMS} (FUSIONSERVE_MAX_ITEMS_PER_REQUEST)" in caught.value.body["message"]


WAV = media.audio(0.5)
BAD_INPUTS = {  # name → (input, param, what the message says)
    "bad_base64_audio": ([[{"type": "input_audio", "input_audio": {"data": "@@not base64", "format": "wav"}}]],
                         "input[0][0].input_audio", "input[0][0].input_audio is not valid base64"),
    "bad_base64_image": ([[{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%"}}]],
                         "input[0][0].image_url", "input[0][0].image_url is not valid base64"),
    "not_an_item": ([7.5], "input[0]", "input[0] must be a string or a content array, not float"),
    "not_a_part": ([["one"]], "input[0][0].type",
                   "must be one of 'text', 'image_url', 'input_audio', 'video_url' (got None)"),
    "two_texts": ([[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]], "input[0][1]",
                  "a second text part in input[0] (the first is input[0][0].text)"),
    "token_ids": ([[1, 2, 3]], "input", "token-id arrays are not accepted"),
    "unknown_part": ([[{"type": "input_file", "input_file": {}}]], "input[0][0].type", "must be one of 'text'"),
    "mp3": ([[{"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "mp3"}}]],
            "input[0][0].input_audio.format", "Input should be 'wav', 'flac' or 'ogg'"),
    "empty_text": (["one", " "], "input[1]", "input[1] is empty"),
    "empty_array": ([[]], "input[0]", "input[0] is an empty content array"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_422_naming_the_param(sdk, case):
    value, param, message = BAD_INPUTS[case]
    body = refused(openai.UnprocessableEntityError, lambda: sdk.embeddings.create(model="tiny", input=value))
    assert (body["param"], body["type"]) == (param, "invalid_request_error"), body
    assert message in body["message"], body


def test_malformed_bodies_answer_in_openai_shape(live):
    url = live.base_url + "/v1/embeddings"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["param"] == "body"
    missing = httpx.post(url, json={"model": "tiny"})
    assert missing.status_code == 422 and missing.json()["error"]["message"] == "input: Field required"
    extra = httpx.post(url, json={"model": "tiny", "input": "one", "temperature": 1})
    assert extra.status_code == 422 and extra.json()["error"]["param"] == "temperature"
    header = httpx.post(url, json={"model": "tiny", "input": "one"}, headers={"x-request-timeout-ms": "-1"})
    assert header.status_code == 422 and header.json()["error"]["param"] == "x-request-timeout-ms"


def test_async_client_and_server_timing(live):
    async def both():
        async with openai.AsyncOpenAI(base_url=live.base_url + "/v1", api_key="unused", max_retries=0) as client:
            texts = client.embeddings.create(model="tiny", input=["one", "two"])
            audio = client.embeddings.create(model="tiny", input=[content({"audio": WAV})])
            raw = client.embeddings.with_raw_response.create(model="tiny", input="one")
            return await asyncio.gather(texts, audio, raw)

    texts, audio, raw = asyncio.run(both())
    np.testing.assert_allclose(vectors(texts), v1_fused(live, [{"text": "one"}, {"text": "two"}]), atol=1e-5)
    np.testing.assert_allclose(vectors(audio), v1_fused(live, [{"audio": WAV}]), atol=1e-5)
    assert "total;dur=" in raw.headers["server-timing"]


def test_openapi_documents_the_route_with_its_schemas(live):
    document = httpx.get(live.base_url + "/openapi.json").json()
    operation = document["paths"]["/v1/embeddings"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["required"] == ["model", "input"] and {"dimensions", "encoding_format"} <= set(request["properties"])
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert response == {"$ref": "#/components/schemas/EmbeddingResponse"}
    assert "usage" in document["components"]["schemas"]["EmbeddingResponse"]["properties"]
    assert operation["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
