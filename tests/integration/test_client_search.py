"""fusionserve_client's search calls against the real server (uvicorn on loopback, a tiny bundle with a joint_space
block): every embedding type decodes to the float answer's quantize(), base64 to the float answer itself; zero-shot,
rerank and score answer as the endpoints' own JSON says, with typed errors naming the field; the CLI's zero-shot
and embed --dimensions / --embedding-types through main()."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from fusionserve_client import (
    EMBEDDING_TYPES,
    AsyncClient,
    Client,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)
from fusionserve_client.search_results import rerank, scores, zero_shots
from service.cli import main
from service.embedding_types import quantize, ranges_for
from service.manifest import read_manifest
from tests.bundles import build_bundle, joint_space_for, sample_inputs
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer
from tests.unit.test_client_boundary import run_cli_in_fresh_python

LABELS = ["zero", "one", "two", "three"]
INTEGERS = {"int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-models")
    return build_bundle(root, "tiny", "1", joint_space=joint_space_for(8, matryoshka_dims=(4,), temperature=0.05))


@pytest.fixture(scope="module")
def live(bundle):
    with ThreadedServer(fast_settings(bundle.parent.parent, max_zero_shot_labels=8)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with Client(live.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def raw():
    return sample_inputs(seed=4)


def assert_same(got, want) -> None:
    """Two zero-shot results alike, scores to float32 rounding (items batched differently sum differently)."""
    assert (got.model, got.version, got.calibrated, got.temperature, got.modalities, got.agreement) == (
        want.model, want.version, want.calibrated, want.temperature, want.modalities, want.agreement,
    )  # fmt: skip
    for mine, theirs in ((got.labels, want.labels), (got.evidence, want.evidence)):
        assert [vars(r) | {"score": 0} for r in mine] == [vars(r) | {"score": 0} for r in theirs]
        assert [r.score for r in mine] == pytest.approx([r.score for r in theirs], abs=1e-5)


def vectors_of(result) -> dict:
    return {"fused": result.fused, **result.per_modality}


@pytest.mark.parametrize("dim", [None, 4])
def test_every_type_decodes_to_the_float_answers_quantize(client, bundle, raw, dim):
    item = {"image": raw["image"], "text": raw["text"]}
    floats = vectors_of(client.embed("tiny", **item, dimensions=dim))  # lists, as without encodings
    ranges = ranges_for(read_manifest(bundle / "manifest.json"), dim or 8)
    for wire in ("float", "base64"):
        typed = client.embed(
            "tiny", **item, dimensions=dim, embedding_types=list(EMBEDDING_TYPES), encoding_format=wire
        )
        assert typed.dim == (dim or 8) and sorted(typed.per_modality) == ["image", "text"]
        for slot, by_type in vectors_of(typed).items():
            assert list(by_type) == list(EMBEDDING_TYPES)
            reference = np.asarray([floats[slot]], np.float32)
            assert by_type["float"].dtype == np.float32
            np.testing.assert_array_equal(by_type["float"], reference[0])  # base64 float == the JSON float answer
            for kind, dtype in INTEGERS.items():
                assert by_type[kind].dtype == dtype, (slot, kind)
                np.testing.assert_array_equal(by_type[kind], quantize(reference, kind, ranges)[0], err_msg=kind)
    plain = client.embed("tiny", **item, dimensions=dim, encoding_format="base64")  # OpenAI's base64: float32
    assert plain.fused.dtype == np.float32
    np.testing.assert_array_equal(plain.fused, np.asarray(floats["fused"], np.float32))


def test_one_type_as_a_str_is_one_array_and_batches_decode_too(client, raw):
    items = [{"text": raw["text"]}, {"image": raw["image"]}]
    floats = client.embed_batch("tiny", items)
    packed = client.embed_batch("tiny", items, embedding_types="ubinary", encoding_format="base64")
    for plain, codes in zip(floats, packed, strict=True):
        assert codes.fused.dtype == np.uint8 and codes.fused.shape == (1,)  # 8 dims: one byte
        np.testing.assert_array_equal(codes.fused, np.packbits(np.asarray(plain.fused) > 0))
    assert client.embed_batch("tiny", [], embedding_types="int8") == []


def test_the_model_says_what_search_can_ask_of_it(client):
    (version,) = client.model("tiny").versions
    assert (version.dimensions, version.embedding_types) == ([4, 8], list(EMBEDDING_TYPES))
    assert version.zero_shot["calibrated"] is True and version.zero_shot["temperature"] == 0.05


def test_dimensions_the_bundle_was_not_trained_for_need_truncate_force(client, raw):
    with pytest.raises(InvalidInputError) as refused:
        client.embed("tiny", text=raw["text"], dimensions=3)
    assert refused.value.field == "dimensions" and "4, 8" in refused.value.message
    forced = client.embed("tiny", text=raw["text"], dimensions=3, truncate="force", embedding_types="float")
    assert forced.dim == 3 and forced.fused.shape == (3,)
    assert float(np.linalg.norm(forced.fused)) == pytest.approx(1.0, abs=1e-5)


def test_zero_shot_is_the_endpoints_answer_as_dataclasses(client, live, raw):
    form = {"image": ("x.png", raw["image"], "image/png"), "text": (None, raw["text"])}
    fields = [*form.items(), *[("labels", (None, label)) for label in LABELS], ("template", (None, "a {}"))]
    direct = httpx.post(live.base_url + "/v1/models/tiny/zero-shot", files=fields, timeout=60)
    assert direct.status_code == 200, direct.text
    result = client.zero_shot("tiny", LABELS, image=raw["image"], text=raw["text"], template="a {}")
    assert_same(result, zero_shots(direct.json())[0])
    assert (result.calibrated, result.temperature, result.modalities) == (True, 0.05, ["image", "text"])
    assert sorted(r.label for r in result.labels) == sorted(LABELS) and result.top == result.labels[0]
    assert sum(r.score for r in result.labels) == pytest.approx(1.0, abs=1e-5)
    assert [e.modality for e in result.evidence] == ["image", "text"]
    assert result.agreement is all(e.agrees for e in result.evidence)


async def test_zero_shot_batches_take_per_modality_templates_async(live, raw):
    items = [{"text": raw["text"]}, {"image": raw["image"], "audio": raw["audio"]}]
    template = {"image": "a photo of {}", "audio": "the sound of {}"}
    body = {"inputs": [{"text": raw["text"]}, {m: base64.b64encode(raw[m]).decode() for m in ("image", "audio")}],
            "labels": LABELS, "template": template}  # fmt: skip
    direct = httpx.post(live.base_url + "/v1/models/tiny/zero-shot", json=body, timeout=60).json()
    async with AsyncClient(live.base_url, timeout=60) as client:
        batch = await client.zero_shot_batch("tiny", items, LABELS, template=template)
        one = await client.zero_shot("tiny", LABELS, image=raw["image"], audio=raw["audio"], template=template)
        assert await client.zero_shot_batch("tiny", [], LABELS) == []
        codes = await client.embed("tiny", text=raw["text"], embedding_types="binary")  # every call is awaitable
        ranked, pairs = await client.rerank("tiny", "one", ["two", "three"]), await client.score("tiny", "a", "b")
    assert codes.fused.dtype == np.int8 and len(ranked.results) == 2 and [p.index for p in pairs] == [0]
    for got, want in zip([*batch, one], [*zero_shots(direct), batch[1]], strict=True):
        assert_same(got, want)


def test_zero_shot_refusals_are_typed_and_name_the_field(client, raw):
    with pytest.raises(InvalidInputError) as refused:
        client.zero_shot("tiny", [], text=raw["text"])
    assert refused.value.field == "labels"
    with pytest.raises(PayloadTooLargeError) as refused:
        client.zero_shot("tiny", [f"label {i}" for i in range(9)], text=raw["text"])
    assert refused.value.field == "labels" and "FUSIONSERVE_MAX_ZERO_SHOT_LABELS" in refused.value.message
    with pytest.raises(TypeError):
        client.zero_shot("tiny", "cat,dog", text="x")  # one str is not a list of labels


def test_rerank_and_score_are_cosines_of_the_fused_embeddings(client, live, raw):
    query = {"text": raw["text"]}
    documents = ["one two", {"image": raw["image"]}, {"audio": raw["audio"], "text": "three"}]
    fused = [np.asarray(v.fused) for v in client.embed_batch("tiny", [query, {"text": "one two"}, *documents[1:]])]
    cosines = [float(fused[0] @ d) for d in fused[1:]]
    ranked = client.rerank("tiny", raw["text"], documents, top_n=2, return_documents=True, version="1")
    assert ranked.model == "tiny:1" and ranked.id and ranked.usage["total_tokens"] > 0
    assert [r.index for r in ranked.results] == list(np.argsort(cosines)[::-1][:2])
    for r in ranked.results:
        assert r.relevance_score == pytest.approx(cosines[r.index], abs=1e-5) and 0 < r.probability < 1
    assert ranked.results[0].document is not None
    body = {"model": "tiny", "query": raw["text"], "documents": ["one two"]}
    direct = httpx.post(live.base_url + "/v1/rerank", json=body, timeout=60).json()
    assert client.rerank("tiny", raw["text"], ["one two"]).results == rerank(direct).results
    pairs = client.score("tiny", query, documents)
    assert [p.index for p in pairs] == [0, 1, 2]
    assert [p.score for p in pairs] == pytest.approx(cosines, abs=1e-5)
    direct = httpx.post(live.base_url + "/v1/score", json={"model": "tiny", "text_1": "a", "text_2": ["b", "c"]})
    assert client.score("tiny", "a", ["b", "c"]) == scores(direct.json())


def test_rerank_refusals_name_the_openai_param(client):
    with pytest.raises(NotFoundError) as missing:
        client.rerank("nope", "q", ["d"])
    assert missing.value.field == "model"
    with pytest.raises(InvalidInputError) as refused:
        client.rerank("tiny", "q", [""])
    assert refused.value.field is not None and refused.value.field.startswith("documents[0]")


def test_cli_zero_shot_prints_the_ranked_labels_and_the_evidence(live, raw, tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(raw["image"])
    args = ["zero-shot", "tiny", "--labels", "zero,one", "--labels", "two, three", "--template", "a photo of {}",
            "--image", str(tmp_path / "x.png"), "--text", raw["text"], "--url", live.base_url]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    head, columns, *rows = capsys.readouterr().out.splitlines()
    with Client(live.base_url) as client:
        expected = client.zero_shot("tiny", LABELS, image=raw["image"], text=raw["text"], template="a photo of {}")
    assert head == "tiny v1 (image + text) zero-shot, calibrated (temperature 0.05)"
    assert columns.split() == ["label", "score"]
    assert [row.split()[:2] for row in rows[:4]] == [[r.label, f"{r.score:.4f}"] for r in expected.labels]
    assert rows[4].startswith("evidence (every modality agrees: ")
    assert [row.split()[0] for row in rows[5:]] == ["image", "text"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--json"])
    body = json.loads(capsys.readouterr().out)
    assert [row["label"] for row in body["labels"]] == [r.label for r in expected.labels]
    assert (body["calibrated"], body["temperature"], body["modalities"]) == (True, 0.05, ["image", "text"])
    with pytest.raises(SystemExit) as done:
        main(["zero-shot", "tiny", "--labels", ",", "--text", "x", "--url", live.base_url])
    assert done.value.code == 1 and "(field labels)" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_zero_shot_loads_no_server_module(live):
    report, _ = run_cli_in_fresh_python("zero-shot", "tiny", "--labels", "a,b", "--text", "x", "--url", live.base_url)
    assert report == {"code": 0, "loaded": []}


def test_cli_embed_with_dimensions_and_types_prints_a_row_per_type_or_json(live, capsys):
    common = ["embed", "tiny", "--text", "two three", "--dimensions", "4", "--embedding-types", "int8,binary"]
    with pytest.raises(SystemExit) as done:
        main([*common, "--url", live.base_url])
    assert done.value.code == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head == "tiny v1 (text) dim 4"
    assert [row.split()[:2] for row in rows] == [["fused", "int8"], ["fused", "binary"], ["text", "int8"],
                                                 ["text", "binary"]]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main([*common, "--json", "--url", live.base_url])
    body = json.loads(capsys.readouterr().out)
    with Client(live.base_url) as client:
        expected = client.embed("tiny", text="two three", dimensions=4, embedding_types=["int8", "binary"])
    assert body["fused"] == {kind: array.tolist() for kind, array in expected.fused.items()}
    assert len(body["fused"]["int8"]) == 4 and len(body["fused"]["binary"]) == 1
