"""The search bench's measurements against a running server (docs/benchmarks.md, "Search"): bytes on the wire per
encoding and dim, retrieval per encoding and dim, zero-shot next to classify. Each takes an httpx.Client whose
base_url is the server; a refusal (4xx) is recorded with its status and message, never raised.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pybase64

from bench.search_data import MODALITIES, Row, content_array, embedding_value_bytes, raw_bytes, v1_item
from bench.search_metrics import (
    SIMILARITIES,
    accuracy,
    label_probabilities,
    mean_over_pairs,
    pair_retrieval,
)
from service.embedding_types import DTYPES, ranges_for
from service.manifest import Manifest
from service.zero_shot import expected_calibration_error

BATCH = 32  # the server's default max_items_per_request
VIDEO_BATCH = 8  # clips per request: each puts its frames into the image queue
PARALLEL = 2  # requests in flight: the server computes one while the client writes / reads the other
WIRE_KINDS = ("int8", "uint8", "binary", "ubinary")
RETRIEVAL_TYPES = ("float", "int8", "binary")


def refusal(answer) -> dict:
    try:
        error = answer.json().get("error", {})
    except ValueError:
        error = {}
    return {
        "refused": answer.status_code,
        "param": error.get("param"),
        "message": error.get("message", answer.text[:200]),
    }


def embeddings_body(model: str, inputs: list, dim: int | None, types, encoding: str, force: bool = False) -> dict:
    """A /v1/embeddings body; no `dimensions` when dim is None (the full embedding_dim)."""
    body = {"model": model, "input": inputs, "encoding_format": encoding}
    if dim is not None:
        body["dimensions"] = dim
    if types is not None:
        body["embedding_types"] = list(types)
    if force:
        body["truncate"] = "force"
    return body


def posted(client, path: str, bodies: list[dict]) -> list:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda body: client.post(path, json=body), bodies))


def wire_bytes(client, model: str, texts: list[str], dims: list[int]) -> list[dict]:
    """One request of `texts` per (dim, type, encoding_format): the body's bytes per item and the embedding
    values' bytes per item (counted in the body), next to the array's own size. A dim the bundle was not trained
    for is asked again with truncate=force (the sizes do not depend on the training)."""
    variants = [("float", None, "float"), ("float", None, "base64")]
    variants += [(kind, [kind], encoding) for kind in WIRE_KINDS for encoding in ("float", "base64")]
    out = []
    for dim in dims:
        for kind, types, encoding in variants:
            row = {"dim": dim, "type": kind, "encoding_format": encoding, "embedding_types": types is not None,
                   "array_bytes": raw_bytes(kind, dim), "forced": False}  # fmt: skip
            answer = client.post("/v1/embeddings", json=embeddings_body(model, texts, dim, types, encoding))
            if answer.status_code != 200 and refusal(answer)["param"] == "dimensions":
                row["forced"] = True
                answer = client.post("/v1/embeddings", json=embeddings_body(model, texts, dim, types, encoding, True))
            if answer.status_code != 200:
                out.append({**row, **refusal(answer)})
                continue
            values = embedding_value_bytes(answer.content)
            out.append({**row, "items": len(values), "body_bytes_per_item": len(answer.content) / len(values),
                        "embedding_bytes_per_item": sum(values) / len(values)})  # fmt: skip
    return out


def decoded(answer: dict, types: list[str]) -> dict[str, np.ndarray]:
    """A base64 embedding_types answer → {type: [N,·] array}."""
    rows = [item["embedding"] for item in answer["data"]]
    return {kind: np.stack([np.frombuffer(pybase64.b64decode(r[kind]), DTYPES[kind]) for r in rows]) for kind in types}


def embed_modality(client, model: str, rows: list[Row], modality: str, dim: int, types: list[str], force: bool):
    """Every row's `modality` alone → ({type: {row index: code}}, None), or (None, the refusal)."""
    have = [i for i, row in enumerate(rows) if modality in row.media]
    size = VIDEO_BATCH if modality == "video" else BATCH
    chunks = [have[i : i + size] for i in range(0, len(have), size)]
    bodies = [embeddings_body(model, [content_array(rows[i], modality) for i in chunk], dim, types, "base64", force)
              for chunk in chunks]  # fmt: skip
    codes: dict[str, dict[int, np.ndarray]] = {kind: {} for kind in types}
    for chunk, answer in zip(chunks, posted(client, "/v1/embeddings", bodies), strict=True):
        if answer.status_code != 200:
            return None, refusal(answer)
        for kind, array in decoded(answer.json(), types).items():
            codes[kind].update(zip(chunk, array, strict=True))
    return codes, None


def retrieval_at(client, manifest: Manifest, rows: list[Row], modalities, dim: int) -> dict:
    """recall@1 (item) and label_recall@1 per modality pair at `dim`, for every similarity the types allow."""
    out: dict = {"refusals": {}}
    types, force = list(RETRIEVAL_TYPES), False
    codes: dict = {}
    for modality in modalities:
        while True:
            found, refused = embed_modality(client, manifest.name, rows, modality, dim, types, force)
            if refused is None:
                break
            if "int8" in types and refused["param"] == f"embedding_types[{types.index('int8')}]":  # no ranges
                out["refusals"]["int8"], types = refused, [t for t in types if t != "int8"]  # float, binary answer
            elif not force and refused["param"] == "dimensions":  # not trained for it: what truncation alone gives
                out["refusals"]["dimensions"], force = refused, True
            else:
                out["refusals"][modality] = refused
                found = None
                break
        if found is not None:
            codes[modality] = found
    out["forced"] = force
    labels = np.array([row.label for row in rows])
    ranges = ranges_for(manifest, dim)
    for kind in SIMILARITIES:
        wire = "int8" if kind == "int8_codes" else kind
        if wire not in types or not codes:
            continue
        pairs = pair_retrieval({m: c[wire] for m, c in codes.items()}, labels, kind, ranges)
        out[kind] = {"mean_recall@1": mean_over_pairs(pairs, "recall@1"),
                     "mean_label_recall@1": mean_over_pairs(pairs, "label_recall@1"), "pairs": pairs}  # fmt: skip
    return out


def subset_items(rows: list[Row]) -> list[tuple[int, tuple[str, ...]]]:
    """(row index, modalities) for each row as given, and each of its modalities alone when it has several."""
    items = []
    for i, row in enumerate(rows):
        items.append((i, row.modalities))
        if len(row.modalities) > 1:
            items.extend((i, (m,)) for m in row.modalities)
    return items


def zero_shot_vs_classify(client, manifest: Manifest, rows: list[Row]) -> dict:
    """Zero-shot (the bundle's labels, template "{}") and the trained classifier on the same items, per subset;
    the ECE of the zero-shot scores of the rows as given."""
    items = subset_items(rows)
    bodies = [[v1_item(rows[i], subset) for i, subset in items[k : k + BATCH]] for k in range(0, len(items), BATCH)]
    labels = list(manifest.labels)
    zero = posted(client, f"/v1/models/{manifest.name}/zero-shot",
                  [{"inputs": b, "labels": labels, "template": "{}"} for b in bodies])  # fmt: skip
    classified = posted(client, f"/v1/models/{manifest.name}/classify?top_k=1", [{"inputs": b} for b in bodies])
    bad = next((a for a in zero + classified if a.status_code != 200), None)
    if bad is not None:
        return refusal(bad) | {"endpoint": str(bad.request.url.path)}
    zero_results = [r for a in zero for r in a.json()["results"]]
    class_results = [r for a in classified for r in a.json()["results"]]
    first = zero[0].json()
    probs = np.stack([label_probabilities(r["labels"], labels) for r in zero_results])
    truth = np.array([rows[i].label for i, _ in items])
    zero_top = probs.argmax(axis=1)
    class_top = np.array([labels.index(r["labels"][0]["label"]) for r in class_results])
    subsets = {}
    in_order = sorted({s for _, s in items}, key=lambda s: (len(s), [MODALITIES.index(m) for m in s]))
    for name in ("+".join(s) for s in in_order):  # singles first, each in the canonical modality order
        chosen = [k for k, (_, s) in enumerate(items) if "+".join(s) == name]
        subsets[name] = {"n": len(chosen), "zero_shot_accuracy": accuracy(zero_top[chosen], truth[chosen]),
                         "classifier_accuracy": accuracy(class_top[chosen], truth[chosen]),
                         "zero_shot_ece": expected_calibration_error(probs[chosen], truth[chosen])}  # fmt: skip
    given = [k for k, (i, s) in enumerate(items) if s == rows[i].modalities]
    return {"calibrated": first["calibrated"], "temperature": first["temperature"], "labels": labels,
            "template": "{}", "n": len(given), "zero_shot_accuracy": accuracy(zero_top[given], truth[given]),
            "classifier_accuracy": accuracy(class_top[given], truth[given]),
            "ece": expected_calibration_error(probs[given], truth[given]), "subsets": subsets}  # fmt: skip
