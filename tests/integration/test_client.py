"""fusionserve_client and `fusionserve classify|embed` against the real server (uvicorn on loopback, tiny
bundle): every input kind gives the reference numbers, batches, async, typed errors naming the field."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from fusionserve_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidInputError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from tests.bundle_reference import reference_outputs
from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer
from tests.integration.test_explain import expected_evidence
from tests.unit.test_boundaries import ROOT
from tests.unit.test_client_boundary import run_cli_in_fresh_python

LABELS = ["zero", "one", "two", "three"]
API_KEY = "client-test-key"


@pytest.fixture(scope="module")
def keyed(tiny_models):
    with ThreadedServer(fast_settings(tiny_models, api_key=API_KEY)) as server:
        yield server


@pytest.fixture
def client(live):
    with Client(live.base_url, timeout=30) as client:
        yield client


def as_kind(kind: str, raw: dict, tmp_path) -> dict:
    """One item's image and audio as the client takes them: files on disk, bytes, or PIL image + waveform."""
    if kind == "path":
        (tmp_path / "item.png").write_bytes(raw["image"])
        (tmp_path / "item.wav").write_bytes(raw["audio"])
        return {"image": tmp_path / "item.png", "audio": str(tmp_path / "item.wav")}
    if kind == "bytes":
        return {"image": raw["image"], "audio": raw["audio"]}
    samples, rate = soundfile.read(io.BytesIO(raw["audio"]), dtype="float32")
    return {"image": Image.open(io.BytesIO(raw["image"])), "audio": (samples, rate)}


def assert_scores(result, expected_probabilities) -> None:
    scores = {row.label: row.score for row in result.labels}
    for label, probability in zip(LABELS, expected_probabilities, strict=True):
        assert scores[label] == pytest.approx(probability, abs=1e-5)


@pytest.mark.parametrize("kind", ["path", "bytes", "pil-and-waveform"])
def test_classify_gives_the_reference_scores_for_every_input_kind(client, tiny_models, tmp_path, kind):
    raw = sample_inputs(seed=3)
    result = client.classify("tiny", **as_kind(kind, raw, tmp_path), text=raw["text"], top_k=4)
    assert (result.model, result.version, result.modalities) == ("tiny", "1", ["image", "text", "audio"])
    assert [row.score for row in result.labels] == sorted((row.score for row in result.labels), reverse=True)
    assert_scores(result, reference_outputs(tiny_models / "tiny" / "1", raw)["probabilities"])


@pytest.mark.parametrize("kind", ["path", "pil-and-waveform"])
def test_embed_gives_the_reference_vectors(client, tiny_models, tmp_path, kind):
    raw = sample_inputs(seed=5)
    media = as_kind(kind, raw, tmp_path)
    result = client.embed("tiny", image=media["image"], audio=media["audio"])
    expected = reference_outputs(tiny_models / "tiny" / "1", {"image": raw["image"], "audio": raw["audio"]})
    assert result.dim == 8 and result.modalities == ["image", "audio"]
    assert sorted(result.per_modality) == ["audio", "image"]
    np.testing.assert_allclose(result.fused, expected["fused"], atol=1e-5)
    for modality, vector in result.per_modality.items():
        np.testing.assert_allclose(vector, expected["embeddings"][modality], atol=1e-5)


def test_batches_mix_modality_subsets_and_keep_their_order(client, tiny_models):
    raws = [sample_inputs(seed=s) for s in (7, 8, 9)]
    items = [{"text": raws[0]["text"]}, {"image": raws[1]["image"], "audio": raws[1]["audio"]}, raws[2]]
    classified = client.classify_batch("tiny", items, top_k=4)
    embedded = client.embed_batch("tiny", items)
    bundle = tiny_models / "tiny" / "1"
    assert [r.modalities for r in classified] == [["text"], ["image", "audio"], ["image", "text", "audio"]]
    for item, result, vectors in zip(items, classified, embedded, strict=True):
        expected = reference_outputs(bundle, item)
        assert_scores(result, expected["probabilities"])
        np.testing.assert_allclose(vectors.fused, expected["fused"], atol=1e-5)
        assert vectors.modalities == result.modalities


def test_explain_gives_each_modalitys_evidence(client, tiny_models):
    raw = sample_inputs(seed=11)
    result = client.classify("tiny", image=raw["image"], text=raw["text"], explain=True)
    evidence, agreement = expected_evidence(tiny_models / "tiny" / "1", {"image": raw["image"], "text": raw["text"]})
    assert [(e.modality, e.label, e.agrees) for e in result.evidence] == [
        (e["modality"], e["label"], e["agrees"]) for e in evidence
    ]
    assert result.agreement is agreement


async def test_the_async_client_answers_concurrent_calls(live, tiny_models):
    raws = [sample_inputs(seed=s) for s in (12, 13)]
    async with AsyncClient(live.base_url) as client:
        one, many, models = await asyncio.gather(
            client.classify("tiny", text=raws[0]["text"], top_k=4),
            client.embed_batch("tiny", [{"image": r["image"]} for r in raws]),
            client.models(),
        )
        assert await client.ready() is True
    assert_scores(one, reference_outputs(tiny_models / "tiny" / "1", {"text": raws[0]["text"]})["probabilities"])
    assert [m.modalities for m in many] == [["image"], ["image"]]
    assert [m.name for m in models] == ["tiny"]


def test_bad_input_raises_the_typed_error_naming_the_field(client):
    with pytest.raises(InvalidInputError) as raised:
        client.classify("tiny", text="")
    assert (raised.value.status, raised.value.field, raised.value.message) == (422, "text", "text is empty")
    with pytest.raises(InvalidInputError) as raised:
        client.embed_batch("tiny", [{"text": "fine"}, {"text": "x" * 100_000}])
    assert raised.value.field == "inputs[1].text" and "limit" in raised.value.message
    with pytest.raises((UnsupportedMediaTypeError, InvalidInputError)) as raised:
        client.classify("tiny", image=b"not an image at all")
    assert raised.value.field == "image"


def test_unknown_models_and_versions_are_not_found(client):
    with pytest.raises(NotFoundError) as raised:
        client.classify("nope", text="x")
    assert "nope" in raised.value.message
    with pytest.raises(NotFoundError):
        client.embed("tiny", text="x", version="42")


def test_models_describe_what_the_server_serves(client):
    (info,) = client.models()
    assert info == client.model("tiny")
    assert (info.name, info.default_version) == ("tiny", "1")
    (version,) = info.versions
    assert (version.status, version.labels, version.embedding_dim, version.explain) == ("ready", LABELS, 8, True)
    assert version.modalities == ["image", "text", "audio"] and info.limits["max_text_chars"] > 0
    assert client.ready() is True


def test_the_api_key_is_sent_and_a_missing_one_is_an_authentication_error(keyed):
    with Client(keyed.base_url) as anonymous, pytest.raises(AuthenticationError) as raised:
        anonymous.classify("tiny", text="x")
    assert (raised.value.status, raised.value.field) == (401, "authorization")
    with Client(keyed.base_url, api_key=API_KEY) as client:
        assert client.classify("tiny", text="one two").model == "tiny"


def cli(*argv: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=clean | env,
    )  # fmt: skip


@pytest.mark.slow
def test_cli_classify_prints_a_table_and_json(live, tmp_path):
    raw = sample_inputs(seed=3)
    (tmp_path / "a.png").write_bytes(raw["image"])
    args = ["classify", "tiny", "--image", str(tmp_path / "a.png"), "--text", raw["text"], "--top-k", "3"]
    table = cli(*args, "--url", live.base_url)
    assert table.returncode == 0, table.stderr
    head, columns, *rows = table.stdout.splitlines()
    with Client(live.base_url) as client:
        expected = client.classify("tiny", image=raw["image"], text=raw["text"], top_k=3)
    assert head == "tiny v1 (image + text)" and columns.split() == ["label", "score"]
    assert [row.split()[:2] for row in rows] == [[r.label, f"{r.score:.4f}"] for r in expected.labels]
    assert all(row.rstrip().endswith("█" * round(r.score * 30)) for row, r in zip(rows, expected.labels, strict=True))
    as_json = cli(*args, "--json", "--url", live.base_url)
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["labels"] == [{"label": r.label, "score": pytest.approx(r.score, abs=1e-6)} for r in expected.labels]
    assert (body["model"], body["version"], body["modalities"]) == ("tiny", "1", ["image", "text"])


@pytest.mark.slow
def test_cli_embed_prints_dims_and_first_values_or_json(live):
    table = cli("embed", "tiny", "--text", "two three", FUSIONSERVE_URL=live.base_url)
    assert table.returncode == 0, table.stderr
    head, fused, text = table.stdout.splitlines()
    assert head == "tiny v1 (text) dim 8" and fused.split()[0] == "fused" and text.split()[0] == "text"
    as_json = json.loads(cli("embed", "tiny", "--text", "two three", "--json", FUSIONSERVE_URL=live.base_url).stdout)
    assert fused.split("[")[1].startswith(f"{as_json['fused'][0]:+.4f}, ") and len(as_json["fused"]) == 8


@pytest.mark.slow
def test_cli_errors_exit_non_zero_with_the_servers_message(live, keyed):
    empty = cli("classify", "tiny", "--text", "", "--url", live.base_url)
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.strip() == "fusionserve: 422 invalid_input (field text): text is empty"
    denied = cli("classify", "tiny", "--text", "x", "--url", keyed.base_url)
    assert denied.returncode == 1 and "401 unauthorized (field authorization)" in denied.stderr
    allowed = cli("classify", "tiny", "--text", "x", "--url", keyed.base_url, FUSIONSERVE_API_KEY=API_KEY)
    assert allowed.returncode == 0 and allowed.stdout.startswith("tiny v1 (text)")
    missing = cli("embed", "tiny", "--image", "/no/such.png", "--url", live.base_url)
    assert missing.returncode == 2 and "cannot read /no/such.png: No such file or directory" in missing.stderr
    nothing = cli("embed", "tiny", "--url", live.base_url)
    assert nothing.returncode == 2 and "give at least one of --image, --audio, --text, --video" in nothing.stderr


@pytest.mark.slow
def test_cli_answers_without_loading_a_server_module(live):
    report, _ = run_cli_in_fresh_python("classify", "tiny", "--text", "one", "--url", live.base_url)
    assert report == {"code": 0, "loaded": []}
