"""fusionserve_client: every input kind encoded as the server takes it (multipart for one item, base64 JSON for
a batch), and answers parsed into dataclasses; requests captured with httpx.MockTransport."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import sys
import wave

import httpx
import numpy as np
import pytest
import soundfile
from PIL import Image

from fusionserve_client import Classification, Client, Embedding, Evidence, Label
from tests.media import audio, png

ROW = {"modalities": ["text"], "labels": [{"label": "one", "score": 0.7}]}
CLASSIFIED = {"model": "tiny", "version": "1", "results": [ROW]}


class Recorder:
    """A MockTransport handler keeping the requests and answering with a fixed body."""

    def __init__(self, body: dict = CLASSIFIED, status: int = 200):
        self.body, self.status, self.requests = body, status, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)

    def client(self, **options) -> Client:
        return Client("http://fusionserve", transport=httpx.MockTransport(self), **options)


def form_parts(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """A multipart request's parts: name → (filename, payload)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + request.content)
    assert message.get_content_type() == "multipart/form-data"
    return {
        part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_parts()
    }


def sent_audio(recorder: Recorder) -> bytes:
    return form_parts(recorder.requests[-1])["audio"][1]


def test_paths_bytes_and_files_are_sent_as_they_are(tmp_path):
    image, clip = png(seed=1), audio(0.2)
    (tmp_path / "cat.png").write_bytes(image)
    (tmp_path / "meow.wav").write_bytes(clip)
    recorder = Recorder()
    with recorder.client() as client:
        client.classify("tiny", image=str(tmp_path / "cat.png"), audio=tmp_path / "meow.wav", text="a cat")
        client.classify("tiny", image=bytearray(image), audio=io.BytesIO(clip))
    by_path, by_bytes = (form_parts(r) for r in recorder.requests)
    assert by_path == {"image": ("cat.png", image), "audio": ("meow.wav", clip), "text": (None, b"a cat")}
    assert by_bytes["image"] == ("image", image) and by_bytes["audio"][1] == clip
    assert recorder.requests[0].url.path == "/v1/models/tiny/classify"
    assert dict(recorder.requests[0].url.params) == {"top_k": "5"}


def test_text_alone_is_still_multipart_not_urlencoded():
    recorder = Recorder()
    with recorder.client() as client:
        result = client.classify("tiny", text="only words", top_k=2, version="3", explain=True)
    (request,) = recorder.requests
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert form_parts(request) == {"text": (None, b"only words")}
    assert dict(request.url.params) == {"top_k": "2", "explain": "true", "version": "3"}
    assert result == Classification("tiny", "1", ["text"], [Label("one", 0.7)])


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "CMYK"])
def test_a_pil_image_is_sent_as_png_with_its_pixels(mode):
    image = Image.open(io.BytesIO(png(9, 7, seed=2))).convert(mode)
    recorder = Recorder()
    with recorder.client() as client:
        client.classify("tiny", image=image)
    filename, data = form_parts(recorder.requests[0])["image"]
    decoded = Image.open(io.BytesIO(data))
    assert filename == "image.png" and decoded.format == "PNG" and decoded.size == (9, 7)
    expected = image if mode != "CMYK" else image.convert("RGB")  # PNG has no CMYK: converted first
    assert decoded.mode == expected.mode
    assert np.array_equal(np.asarray(decoded), np.asarray(expected))


def test_a_float_waveform_is_sent_as_float_wav_losslessly():
    samples = (0.5 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    recorder = Recorder()
    with recorder.client() as client:
        client.classify("tiny", audio=(samples, np.int64(8000)))  # a numpy rate, as some readers return
    decoded, rate = soundfile.read(io.BytesIO(sent_audio(recorder)), dtype="float32")
    assert rate == 8000 and soundfile.info(io.BytesIO(sent_audio(recorder))).subtype == "FLOAT"
    np.testing.assert_array_equal(decoded, samples)


def test_an_int16_stereo_waveform_is_sent_as_16_bit_pcm():
    samples = np.random.default_rng(0).integers(-30000, 30000, (4000, 2), dtype=np.int16)
    recorder = Recorder()
    with recorder.client() as client:
        client.classify("tiny", audio=(samples, 44_100))
    decoded, rate = soundfile.read(io.BytesIO(sent_audio(recorder)), dtype="int16")
    assert rate == 44_100 and decoded.shape == (4000, 2)
    np.testing.assert_array_equal(decoded, samples)


def test_without_soundfile_the_stdlib_writes_16_bit_pcm(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # `import soundfile` now fails, as if not installed
    samples = np.stack([np.linspace(-1.2, 1.2, 3000), np.zeros(3000)], axis=1)  # out of range: clipped
    recorder = Recorder()
    with recorder.client() as client:
        client.classify("tiny", audio=(samples, 16_000))
    with wave.open(io.BytesIO(sent_audio(recorder))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 16_000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    np.testing.assert_allclose(frames / 32767, np.clip(samples, -1, 1), atol=1 / 32767)


def test_a_batch_is_one_json_body_with_base64_media():
    image, clip = png(seed=4), audio(0.1)
    recorder = Recorder({"model": "tiny", "version": "2", "results": [ROW] * 2})
    with recorder.client() as client:
        results = client.classify_batch("tiny", [{"image": image, "text": "x"}, {"audio": clip}], top_k=1)
        assert client.classify_batch("tiny", []) == []  # nothing to send: no request
    (request,) = recorder.requests
    assert request.headers["content-type"] == "application/json" and dict(request.url.params) == {"top_k": "1"}
    inputs = json.loads(request.content)["inputs"]
    assert inputs == [
        {"image": base64.b64encode(image).decode(), "text": "x"},
        {"audio": base64.b64encode(clip).decode()},
    ]
    assert [r.version for r in results] == ["2", "2"]


def test_answers_become_dataclasses_with_evidence_and_per_modality_vectors():
    evidence = [
        {"modality": "image", "label": "two", "score": 0.8, "agrees": True},
        {"modality": "text", "label": "one", "score": 0.5, "agrees": False},
    ]
    labels = [{"label": "two", "score": 0.6}, {"label": "one", "score": 0.3}]
    row = {"modalities": ["image", "text"], "labels": labels, "evidence": evidence, "agreement": False}
    explained = {"model": "tiny", "version": "1", "results": [row]}
    with Recorder(explained).client() as client:
        result = client.classify("tiny", text="t", explain=True)
    assert result.top == Label("two", 0.6) and result.agreement is False
    assert result.evidence == [Evidence("image", "two", 0.8, True), Evidence("text", "one", 0.5, False)]
    row = {"modalities": ["text", "audio"], "fused": [1, 0, 0], "text": [0, 1, 0], "audio": [0, 0, 1]}
    embedded = {"model": "tiny", "version": "1", "dim": 3, "results": [row]}
    recorder = Recorder(embedded)
    with recorder.client() as client:
        vector = client.embed("tiny", text="t", audio=audio(0.1), version="1")
    assert recorder.requests[0].url.path == "/v1/models/tiny/embed"
    assert vector == Embedding("tiny", "1", ["text", "audio"], [1, 0, 0], {"text": [0, 1, 0], "audio": [0, 0, 1]})
    assert vector.dim == 3


def test_the_api_key_goes_as_a_bearer_token_and_model_names_are_quoted():
    recorder = Recorder()
    with recorder.client(api_key="s3cret") as client:
        client.classify("my model/x", text="t")
    (request,) = recorder.requests
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.url.raw_path.startswith(b"/v1/models/my%20model%2Fx/classify")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({}, ValueError, "at least one of image, audio, text"),
        ({"image": 3}, TypeError, "image must be a path, bytes, a binary file or a PIL image; got int"),
        ({"audio": np.zeros(10)}, TypeError, "(numpy waveform, sample rate) tuple"),
        ({"audio": (np.zeros(10, dtype=np.int32), 16000)}, TypeError, "float (in [-1, 1]) or int16, got int32"),
        ({"audio": (np.zeros((2, 2, 2)), 16000)}, ValueError, "[frames] or [frames, channels]"),
        ({"audio": (np.zeros(10), 0)}, ValueError, "sample rate must be positive"),
        ({"text": b"bytes"}, TypeError, "text must be a str, got bytes"),
    ],
)
def test_inputs_that_cannot_be_sent_are_refused_before_any_request(kwargs, error, words):
    recorder = Recorder()
    with recorder.client() as client, pytest.raises(error) as raised:
        client.classify("tiny", **kwargs)
    assert words in str(raised.value) and not recorder.requests


def test_a_batch_item_with_an_unknown_key_is_named():
    with Recorder().client() as client, pytest.raises(ValueError, match=r"items\[1\] has unknown keys \['depth'\]"):
        client.embed_batch("tiny", [{"text": "a"}, {"depth": b"..."}])
