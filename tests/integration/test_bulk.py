"""`fusionserve batch` on a local Ray (2 CPUs, 2 actors): the answers equal the real server's for the same items
(classify and embed; JSONL, CSV and Parquet with binary media), bad rows carry their error, and the OpenAI-Batch
JSONL equals /v1/embeddings. One Ray for the module: it takes seconds to start."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings, serving

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

SUBSETS = [("image", "text", "audio"), ("text",), ("image",), ("audio", "text"), ("image", "audio"), ("text",)]
FAST = dict(max_queue_delay_ms=2.0, warmup_batch_sizes=[1], intra_op_threads=1, providers="cpu")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Good items (media as files under media/) and the two bad rows: a missing file and an undecodable image."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "media").mkdir()
    items = []
    for index, subset in enumerate(SUBSETS):
        sample = sample_inputs(index)
        item = {"id": f"item{index}"}
        for modality in subset:
            if modality == "text":
                item["text"] = sample["text"]
            else:
                name = f"media/{index}.{'png' if modality == 'image' else 'wav'}"
                (root / name).write_bytes(sample[modality])
                item[modality] = name
        items.append(item)
    (root / "media/junk.png").write_bytes(b"not an image at all")
    bad = [{"id": "missing", "image": "media/none.png", "text": "two cats"}, {"id": "junk", "image": "media/junk.png"}]
    return root, items + bad


def _write_inputs(root: Path, rows: list[dict]) -> dict[str, str]:
    columns = ("id", "image", "audio", "text")
    (root / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with open(root / "items.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        writer.writerows(rows)
    media = {m: [(root / r[m]).read_bytes() if m in r and (root / r[m]).exists() else None for r in rows]
             for m in ("image", "audio")}  # fmt: skip
    binary = {m: pa.array(values, pa.binary()) for m, values in media.items()}  # bytes columns, not paths
    table = pa.table({"id": [r["id"] for r in rows], "text": [r.get("text") for r in rows], **binary})
    pq.write_table(table, root / "items.parquet")
    return {
        "jsonl": str(root / "items.jsonl"),
        "csv": str(root / "items.csv"),
        "parquet": (root / "items.parquet").as_uri(),
    }  # fmt: skip  (a URI: pyarrow's filesystem resolves it)


def _http_item(root: Path, row: dict) -> dict:
    return {m: v if m == "text" else base64.b64encode((root / v).read_bytes()).decode() for m, v in row.items()
            if m != "id"}  # fmt: skip


@pytest.fixture(scope="module")
def server_answers(tiny_models, corpus):
    return asyncio.run(_ask_server(tiny_models, corpus))


async def _ask_server(tiny_models: Path, corpus) -> dict:
    """What the real app answers for the good items: classify (every label's score) and embed."""
    root, rows = corpus
    items = [_http_item(root, row) for row in rows[: len(SUBSETS)]]
    async with serving(fast_settings(tiny_models)) as (_, client):
        classified = (await client.post("/v1/models/tiny/classify?top_k=4", json={"inputs": items})).json()
        embedded = (await client.post("/v1/models/tiny/embed", json={"inputs": items})).json()
        bad = await client.post("/v1/models/tiny/classify", json={"inputs": [_http_item(root, rows[-1])]})
        body = {"model": "tiny", "input": [[{"type": "text", "text": rows[1]["text"]}], rows[5]["text"]]}
        openai = (await client.post("/v1/embeddings", json=body)).json()
    return {"classify": classified["results"], "embed": embedded["results"], "bad": bad.json(), "openai": openai,
            "openai_body": body}  # fmt: skip


def _run(tiny_models: Path, source: str, output: Path, task: str, fmt: str = "items") -> dict:
    from service.bulk.job import BulkJob, run_job

    job = BulkJob(model_dir=str(tiny_models), model="tiny", input=source, output=str(output), task=task,
                  format=fmt, concurrency=2, batch_size=3, settings=FAST)  # fmt: skip
    return run_job(job)


def _check_rows(table: pa.Table, server: dict, task: str, kind: str) -> None:
    by_id = {row["id"]: row for row in table.to_pylist()}
    labels = ["zero", "one", "two", "three"]
    for index in range(len(SUBSETS)):
        row, embedded = by_id[f"item{index}"], server["embed"][index]
        assert row["error"] is None
        np.testing.assert_allclose(row["fused"], embedded["fused"], atol=TOLERANCE)
        for slot in ("image", "text", "audio"):
            expected = embedded.get(slot)
            assert (row[f"{slot}_embedding"] is None) == (expected is None), slot
            if expected is not None:
                np.testing.assert_allclose(row[f"{slot}_embedding"], expected, atol=TOLERANCE)
        if task == "classify":
            scores = {entry["label"]: entry["score"] for entry in server["classify"][index]["labels"]}
            np.testing.assert_allclose(row["scores"], [scores[label] for label in labels], atol=TOLERANCE)
            assert row["label"] == server["classify"][index]["labels"][0]["label"]
    if kind != "parquet":  # in Parquet the missing file is a null bytes cell: that row is text only, and fine
        assert "none.png" in by_id["missing"]["error"] and by_id["missing"]["fused"] is None
    assert by_id["junk"]["error"] == server["bad"]["error"]["message"].replace("inputs[0].", "")


@pytest.mark.parametrize(("kind", "task"), [("jsonl", "classify"), ("csv", "embed"), ("parquet", "classify")])
def test_bulk_equals_the_server(local_ray, tiny_models, corpus, server_answers, tmp_path, kind, task):
    root, rows = corpus
    sources = _write_inputs(root, rows)
    output = tmp_path / ("answers" if kind == "csv" else "out.parquet")  # a folder (Ray's writers) or one file
    summary = _run(tiny_models, sources[kind], output, task)
    assert summary["rows"] == len(rows) and summary["errors"] == (1 if kind == "parquet" else 2)
    _check_rows(pq.read_table(output), server_answers, task, kind)


def test_openai_batch_equals_v1_embeddings(local_ray, tiny_models, server_answers, tmp_path):
    body = server_answers["openai_body"]
    empty = {"model": "tiny", "input": []}
    lines = [{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": body},
             {"custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": empty}]  # fmt: skip
    source = tmp_path / "requests.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = _run(tiny_models, str(source), tmp_path / "answers.jsonl", "embed", "openai")
    assert summary["rows"] == 2 and summary["errors"] == 1
    answers = {a["custom_id"]: a for a in map(json.loads, (tmp_path / "answers.jsonl").read_text().splitlines())}
    good, expected = answers["a"]["response"], server_answers["openai"]
    assert good["status_code"] == 200 and answers["a"]["error"] is None
    assert good["body"]["model"] == expected["model"] and good["body"]["usage"] == expected["usage"]
    for got, want in zip(good["body"]["data"], expected["data"], strict=True):
        np.testing.assert_allclose(got["embedding"], want["embedding"], atol=TOLERANCE)
    refused = answers["b"]["response"]
    assert refused["status_code"] == 422 and refused["body"]["error"]["param"] == "input"
