"""Video through every protocol, against a real server on loopback with real clients (httpx for v1, tritonclient
http and grpc, the openai SDK, fusionserve_client and the CLI): the same segments with the same numbers in each,
the request's segmentation honoured, explain by slot, Server-Timing's and /metrics' video stages, and bad video
input or a bad segmentation refused in each protocol's shape with v1's status and message."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import openai
import pytest

from fusionserve_client import Client
from tests.bundles import build_bundle, sample_video
from tests.integration.conftest import fast_settings, metric
from tests.integration.live import ThreadedServer, free_port
from tests.integration.protocols import b64
from tests.integration.test_client import cli
from tests.integration.video_server import MODEL, READER_IDS, READERS, TEXT, Refusal, Segments, v1_embed

pytestmark = pytest.mark.slow
SECONDS = 2.5
GRPC_CODES = {"415": "INVALID_ARGUMENT", "422": "INVALID_ARGUMENT", "413": "INVALID_ARGUMENT"}


@pytest.fixture(scope="module")
def clip() -> bytes:
    return sample_video(seed=4, seconds=SECONDS)


@pytest.fixture(scope="module")
def clip_host(clip):
    """An allow-listed host on loopback serving the clip at /clip.mp4 (404 elsewhere)."""

    class Host(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = clip if self.path == "/clip.mp4" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{host.server_address[1]}"
    host.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, clip_host):
    root = tmp_path_factory.mktemp("video-models")
    build_bundle(root, MODEL, "1", modalities=("image", "text", "audio", "video"), golden=False)  # replay: engine tests
    settings = fast_settings(root, url_allow_hosts=[clip_host]).model_copy(update={"grpc_port": free_port()})
    with ThreadedServer(settings) as live:
        live.grpc_url = f"127.0.0.1:{settings.grpc_port}"
        yield live


@pytest.fixture(scope="module")
def reference(server, clip) -> Segments:
    """v1's answer for 1 s segments overlapping by 0.5 s: what every protocol must answer."""
    answer = v1_embed(server.base_url, clip, segment_s=1.0, overlap_s=0.5)
    assert isinstance(answer, Segments), answer
    return answer


def test_v1_segments_follow_the_requested_segmentation(reference):
    starts, ends = reference.bounds[:, 0], reference.bounds[:, 1]
    assert np.allclose(starts, np.arange(len(starts)) * 0.5)  # a segment every 1 - 0.5 s
    assert np.allclose(ends[:-1] - starts[:-1], 1.0) and ends[-1] == pytest.approx(SECONDS, abs=0.1)
    assert np.allclose(np.linalg.norm(reference.fused, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_every_protocol_answers_the_same_segments(server, clip, reference, reader):
    answer = reader(server, clip, segment_s=1.0, overlap_s=0.5)
    assert isinstance(answer, Segments), answer
    assert np.allclose(answer.bounds, reference.bounds, atol=1e-5)
    assert np.allclose(answer.fused, reference.fused, atol=1e-5)
    assert np.allclose(answer.clip_fused, reference.clip_fused, atol=1e-5)


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_the_models_default_segmentation_applies_without_options(server, clip, reader):
    answer = reader(server, clip)
    assert isinstance(answer, Segments), answer
    assert np.allclose(answer.bounds[:, 0], np.arange(len(answer.bounds)))  # tests/bundles.py: 1 s, no overlap


def test_classify_answers_segments_and_explains_by_slot(server, clip):
    files = {"video": ("clip.mp4", clip, "video/mp4"), "text": (None, TEXT)}
    response = httpx.post(f"{server.base_url}/v1/models/{MODEL}/classify", files=files,
                          params={"explain": "true", "top_k": 2, "segment_s": 1.0}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["modalities"] == ["text", "video"]
    assert [e["modality"] for e in result["evidence"]] == ["text", "video_frames", "video_audio"]
    for segment in result["segments"]:
        assert len(segment["labels"]) == 2 and segment["modalities"] == ["video_frames", "video_audio"]
        assert [e["modality"] for e in segment["evidence"]] == ["text", "video_frames", "video_audio"]
    timing = response.headers["Server-Timing"]
    assert all(f"{stage};dur=" in timing for stage in ("video-probe", "video-frames", "video-audio"))


def test_a_silent_clip_answers_from_its_frames(server):
    silent = sample_video(seed=5, seconds=SECONDS, audio=False)
    response = httpx.post(f"{server.base_url}/v1/models/{MODEL}/embed",
                          files={"video": ("silent.mp4", silent, "video/mp4")}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert "video_audio" not in result  # no sound: no clip-level sound embedding
    assert {tuple(s["modalities"]) for s in result["segments"]} == {("video_frames",)}
    assert all(set(s["embeddings"]) == {"video_frames"} for s in result["segments"])


def test_the_typed_client_and_the_cli_read_segments(server, clip, reference, tmp_path):
    with Client(server.base_url) as client:
        embedded = client.embed(MODEL, text=TEXT, video=clip, segment_s=1.0, overlap_s=0.5)
        classified = client.classify(MODEL, text=TEXT, video=clip, segment_s=1.0, overlap_s=0.5)
    assert np.allclose([s.fused for s in embedded.segments], reference.fused, atol=1e-5)
    assert [(s.start_s, s.end_s) for s in classified.segments] == [tuple(b) for b in reference.bounds.tolist()]
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    table = cli(
        "classify",
        MODEL,
        "--video",
        str(path),
        "--text",
        TEXT,
        "--segment-s",
        "1",
        "--overlap-s",
        "0.5",
        "--url",
        server.base_url,
    )
    assert table.returncode == 0, table.stderr
    timeline = table.stdout.split(f"segments ({len(classified.segments)})\n")[1].splitlines()
    assert [line.split()[2] for line in timeline] == [s.top.label for s in classified.segments]


def test_video_metrics_count_what_was_decoded(server, clip, reference):
    decoded = metric(server.app, "fusionserve_video_frames_total", model=MODEL, kind="decoded")
    kept = metric(server.app, "fusionserve_video_frames_total", model=MODEL, kind="kept")
    assert 0 < kept <= decoded
    assert metric(server.app, "fusionserve_video_seconds_total", model=MODEL) >= SECONDS - 0.1
    for stage in ("video_probe", "video_frames", "video_audio"):
        count = metric(server.app, "fusionserve_stage_duration_seconds_count", model=MODEL, stage=stage,
                       modality="video")  # fmt: skip
        assert count >= 1, stage


def openai_url(server, url: str, **options):
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0) as sdk:
        return sdk.embeddings.create(model=MODEL, input=[[{"type": "video_url", "video_url": {"url": url}}]],
                                     encoding_format="float", extra_body=options)  # fmt: skip


def test_openai_fetches_a_video_url_only_from_an_allowed_host(server, clip_host, clip):
    fetched = openai_url(server, f"{clip_host}/clip.mp4", segment_s=1.0).data[0]
    inline = openai_url(server, "data:video/mp4;base64," + b64(clip), segment_s=1.0).data[0]
    assert np.allclose([s["embedding"] for s in fetched.segments], [s["embedding"] for s in inline.segments])
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        openai_url(server, "https://clips.example/clip.mp4")
    assert refused.value.body["param"] == "input[0][0].video_url"
    assert "FUSIONSERVE_URL_ALLOW_HOSTS" in refused.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as missing:
        openai_url(server, f"{clip_host}/gone.mp4")
    assert "could not be fetched" in missing.value.body["message"]


def test_the_models_description_says_its_segmentation(server):
    with Client(server.base_url) as client:
        (version,) = client.model(MODEL).versions
        assert version.modalities == ["image", "text", "audio", "video"] and version.video["segment_s"] == 1.0
        assert client.model(MODEL).limits["max_video_seconds"] > 0
    metadata = httpx.get(f"{server.base_url}/v2/models/{MODEL}", timeout=30).json()
    assert (metadata["parameters"]["segment_s"], metadata["parameters"]["overlap_s"]) == (1.0, 0.0)
    assert {"name": "video", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    assert "segment_video_audio_embedding" in [output["name"] for output in metadata["outputs"]]


BAD_VIDEOS = {"random_bytes": b"\x00 not a video at all", "truncated_mp4": "truncated"}


def expected(reader, refusal_v1: Refusal) -> str:
    return GRPC_CODES.get(refusal_v1.status, refusal_v1.status) if reader.grpc else refusal_v1.status


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
@pytest.mark.parametrize("bad", BAD_VIDEOS)
def test_bad_video_is_refused_with_v1s_status_and_message(server, clip, reader, bad):
    video = clip[: len(clip) // 3] if BAD_VIDEOS[bad] == "truncated" else BAD_VIDEOS[bad]
    v1 = v1_embed(server.base_url, video)
    assert isinstance(v1, Refusal) and v1.status in {"415", "422"}, v1
    answer = reader(server, video)
    assert isinstance(answer, Refusal) and answer.status == expected(reader, v1), answer
    # the field is named the protocol's way (video, video[1], input[0][1].video_url), then the reason; what PyAV
    # adds after it names the request's own temporary file, so only the reason is compared
    reason = v1.message.split(": ")[1]
    assert reason in answer.message, (answer.message, v1.message)


OPTIONS = {"negative": ({"segment_s": -1.0}, "segment_s", "must be > 0"),
           "overlap_too_long": ({"segment_s": 1.0, "overlap_s": 1.0}, "overlap_s", "below segment_s")}  # fmt: skip


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
@pytest.mark.parametrize("case", OPTIONS)
def test_a_bad_segmentation_is_a_422_naming_the_option(server, clip, reader, case):
    options, name, words = OPTIONS[case]
    answer = reader(server, clip, **options)
    assert isinstance(answer, Refusal), answer
    assert answer.status == ("INVALID_ARGUMENT" if reader.grpc else "422") and words in answer.message
    named = f"parameters.{name}" if reader.name.startswith("v2") else name
    assert named in answer.message and (answer.kind in (None, named)), answer
