"""docs/bad-input.md rows 1–11 through HTTP: a clear 4xx naming the field and the limit, never a 500."""

from __future__ import annotations

import pytest

from tests import media
from tests.integration.conftest import fast_settings, form, metric, serving

CLASSIFY = "/v1/models/tiny/classify"


def assert_error(response, status: int, field: str | None = None, *needles: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "field", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert error["field"] == field
    for needle in needles:
        assert needle in error["message"], error["message"]


@pytest.fixture
async def small_limits(tiny_models):
    settings = fast_settings(
        tiny_models,
        max_upload_bytes=64 * 1024,
        max_form_parts=3,
        max_field_bytes=1024,
        max_text_chars=50,
        max_items_per_request=4,
    )
    async with serving(settings) as pair:
        yield pair


async def test_body_over_limit_with_content_length(small_limits):
    _, client = small_limits
    response = await client.post(CLASSIFY, files={"image": ("a.png", b"\0" * 100_000, "image/png")})
    assert_error(response, 413, None, "65536 bytes", "FUSIONSERVE_MAX_UPLOAD_BYTES")


async def test_body_over_limit_without_content_length_stops_reading(small_limits):
    _, client = small_limits
    sent = []

    async def chunks():  # a well-formed file part that never ends: 16 MB offered in 16 kB chunks
        yield b'--abc\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 16_384

    response = await client.post(
        CLASSIFY, content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"}
    )
    assert_error(response, 413, None, "65536 bytes")
    assert len(sent) < 10  # read stopped early


async def test_too_many_parts_and_huge_field(small_limits):
    _, client = small_limits
    many = {"text": "one", "a": "1", "b": "2", "c": "3", "d": "4"}
    assert_error(
        await client.post(CLASSIFY, data=many, files={"image": ("a.png", media.png(), "image/png")}),
        400,
        "form",
        "limit is 3",
        "FUSIONSERVE_MAX_FORM_PARTS",
    )
    huge = {"text": "word " * 1000}
    assert_error(
        await client.post(CLASSIFY, data=huge, files={"image": ("a.png", media.png(), "image/png")}),
        413,
        "form",
        "1024 bytes",
        "FUSIONSERVE_MAX_FIELD_BYTES",
    )


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream", None]
)
async def test_unsupported_content_types(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(CLASSIFY, content=b"text=hello", headers=headers)
    assert_error(response, 415, "content-type", "multipart/form-data", "application/json")


async def test_json_body_declared_as_multipart_and_bad_json(client):
    declared_multipart = await client.post(
        CLASSIFY, content=b'{"inputs": []}', headers={"content-type": "multipart/form-data"}
    )
    assert_error(declared_multipart, 400, "form", "multipart")
    bad_json = await client.post(CLASSIFY, content=b"--xyz\r\n", headers={"content-type": "application/json"})
    assert_error(bad_json, 400, "body", "not valid JSON")


async def test_no_modality_and_unknown_field(client):
    assert_error(await client.post(CLASSIFY, json={"inputs": [{}]}), 422, "inputs[0]", "no input")
    assert_error(await client.post(CLASSIFY, **form(depth="x")), 422, "depth", "unknown form field")
    assert_error(await client.post(CLASSIFY, json={"inputs": [{"depth": "x"}]}), 422, "inputs[0].depth")


async def test_modality_the_model_does_not_have(tmp_path):
    from tests.bundles import build_bundle

    build_bundle(tmp_path, "textonly", "1", modalities=("text",))
    async with serving(fast_settings(tmp_path)) as (_, client):
        response = await client.post(
            "/v1/models/textonly/classify",
            data={"text": "one"},
            files={"audio": ("a.wav", media.audio(), "audio/wav")},
        )
        assert_error(response, 422, "audio", "no audio encoder", "accepts text")


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b"\x13\x37" * 500, 422, "JPEG"),
        (media.truncated_jpeg(), 422, ""),
        (media.encoded_image("GIF"), 415, "GIF"),
        (media.encoded_image("TIFF"), 415, ""),
        (media.png_bomb(), 413, "pixels"),
    ],
    ids=["random-bytes", "truncated-jpeg", "gif-named-png", "tiff", "decompression-bomb"],
)
async def test_bad_images(app_client, payload, status, needle):
    app, client = app_client
    response = await client.post(CLASSIFY, files={"image": ("photo.png", payload, "image/png")})
    assert_error(response, status, "image", needle)
    reason = "too_large" if status == 413 else "invalid"
    assert metric(app, "fusionserve_rejected_total", model="tiny", reason=reason) == 1


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b"RIFF" + b"\x00" * 64, 422, ""),
        (b"garbage" * 100, 422, "WAV"),
        (media.audio(1.0)[:30], 422, ""),
        (media.wav_claiming(3 * 3600), 413, "seconds"),
        (media.audio(12.0), 413, "10"),
    ],
    ids=["bad-riff", "garbage", "truncated-wav", "claims-hours", "longer-than-max"],
)
async def test_bad_audio(client, payload, status, needle):
    response = await client.post(CLASSIFY, files={"audio": ("clip.wav", payload, "audio/wav")})
    assert_error(response, status, "audio", needle)


@pytest.mark.parametrize(
    "clip",
    [
        media.audio(1.0, rate=44_100, channels=2),
        media.audio(1.0, rate=8_000),
        media.audio(1.0, rate=48_000, subtype="FLOAT"),
        media.audio(1.0, rate=22_050, subtype="PCM_32"),
        media.audio(1.0, fmt="FLAC", subtype="PCM_16"),
        media.audio(1.0, fmt="OGG", subtype="VORBIS"),
    ],
    ids=["stereo-44k", "8k", "48k-float", "22k-int32", "flac", "ogg"],
)
async def test_audio_formats_accepted(client, clip):
    response = await client.post("/v1/models/tiny/embed", files={"audio": ("clip", clip, "application/octet-stream")})
    assert response.status_code == 200, response.text


async def test_bad_text(small_limits):
    _, client = small_limits
    assert_error(await client.post(CLASSIFY, **form(text="   ")), 422, "text", "empty")
    assert_error(await client.post(CLASSIFY, **form(text="x" * 51)), 422, "text", "50")
    assert_error(
        await client.post(CLASSIFY, files={"text": ("t.txt", b"\xff\xfe bad", "text/plain")}),
        422,
        "text",
        "UTF-8",
    )
    assert_error(await client.post(CLASSIFY, json={"inputs": [{"text": "a\x00b"}]}), 422, "inputs[0].text", "NUL")
    long_in_tokens = " ".join(["one"] * 40)[:50]  # within max chars, beyond the 16-token max length
    assert (await client.post(CLASSIFY, **form(text=long_in_tokens))).status_code == 200  # truncated


async def test_json_limits(small_limits):
    _, client = small_limits
    too_many = {"inputs": [{"text": "one"}] * 5}
    assert_error(await client.post(CLASSIFY, json=too_many), 413, "inputs", "limit is 4")
    bad_b64 = {"inputs": [{"text": "one"}, {"image": "not base64!!"}]}
    assert_error(await client.post(CLASSIFY, json=bad_b64), 422, "inputs[1].image", "base64")
    assert_error(await client.post(CLASSIFY, json={"inputs": []}), 422, "inputs")
    assert_error(await client.post(CLASSIFY, json={"items": []}), 422)


async def test_unknown_model_and_version(client):
    assert_error(await client.post("/v1/models/nope/classify", **form(text="one")), 404, "model", "nope")
    assert_error(await client.post(CLASSIFY + "?version=7", **form(text="one")), 404, "version", "'7'")
    assert_error(await client.get("/v1/models/nope"), 404, "model")


async def test_bad_query_and_deadline_header(client):
    assert_error(await client.post(CLASSIFY + "?top_k=0", **form(text="one")), 422, "top_k")
    response = await client.post(CLASSIFY, **form(text="one"), headers={"x-request-timeout-ms": "soon"})
    assert_error(response, 422, "x-request-timeout-ms")
