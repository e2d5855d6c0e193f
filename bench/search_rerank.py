"""Rerank on the server against the same ranking on the client (docs/benchmarks.md, "Search"): a query and 100
text documents through POST /v1/rerank, and the same 101 items through POST /v1/embeddings (the server's item
limit per request, in parallel) with the cosine and the sort in numpy here. The rounds alternate the two paths
(rerank, embeddings, embeddings, rerank, ...) so a machine that gets busier weighs on both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pybase64

from bench.search_stages import BATCH, embeddings_body, posted, refusal


def _documents(texts: list[str], round_: int, count: int) -> tuple[str, list[str]]:
    """Round r's query and documents: another window of the pool each round (no answer is a repeat)."""
    start = (round_ * count) % len(texts)
    window = [texts[(start + k) % len(texts)] for k in range(count + 1)]
    return window[0], window[1:]


def by_rerank(client, model: str, query: str, documents: list[str]):
    answer = client.post("/v1/rerank", json={"model": model, "query": query, "documents": documents})
    if answer.status_code != 200:
        return None, refusal(answer)
    results = answer.json()["results"]
    return {r["index"]: r["relevance_score"] for r in results}, None


def by_embeddings(client, model: str, query: str, documents: list[str]):
    items = [query, *documents]
    # the full embedding_dim, as rerank scores
    bodies = [embeddings_body(model, items[k : k + BATCH], None, None, "base64") for k in range(0, len(items), BATCH)]
    answers = posted(client, "/v1/embeddings", bodies)
    if any(a.status_code != 200 for a in answers):
        return None, refusal(next(a for a in answers if a.status_code != 200))
    vectors = np.concatenate([decoded_float(a.json()) for a in answers])
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")
    return {int(i): float(scores[i]) for i in order}, None


def decoded_float(answer: dict) -> np.ndarray:
    """A plain base64 answer (each embedding float32 little-endian bytes, base64) → [N,D]."""
    return np.stack([np.frombuffer(pybase64.b64decode(r["embedding"]), "<f4") for r in answer["data"]])


PATHS = {"rerank": by_rerank, "embeddings+numpy": by_embeddings}


def compare(client, model: str, texts: list[str], rounds: int, server_cpu: Callable[[], float | None],
            documents: int = 100) -> dict:  # fmt: skip
    """documents/s and CPU ms per document (server, client) of each path; the scores' largest difference."""
    totals = {name: {"wall_s": 0.0, "server_cpu_s": 0.0, "client_cpu_s": 0.0, "documents": 0} for name in PATHS}
    query, docs = _documents(texts, 0, documents)
    for name, path in PATHS.items():  # warm-up: the first of each pays lazy imports and allocation
        _, refused = path(client, model, query, docs)
        if refused is not None:
            return {"path": name, **refused}
    differences = []
    for round_ in range(1, rounds + 1):
        query, docs = _documents(texts, round_, documents)
        names = list(PATHS) if round_ % 2 else list(reversed(PATHS))
        scores = {}
        for name in names:
            cpu0, client0, wall0 = server_cpu() or 0.0, time.process_time(), time.perf_counter()
            scores[name], _ = PATHS[name](client, model, query, docs)
            total = totals[name]
            total["wall_s"] += time.perf_counter() - wall0
            total["server_cpu_s"] += (server_cpu() or 0.0) - cpu0
            total["client_cpu_s"] += time.process_time() - client0
            total["documents"] += len(docs)
        differences.append(max(abs(scores["rerank"][i] - scores["embeddings+numpy"][i]) for i in range(len(docs))))
    rows = {name: summarise(total) for name, total in totals.items()}
    ratio = rows["rerank"]["documents_per_s"] / rows["embeddings+numpy"]["documents_per_s"]
    return {"documents_per_request": documents, "rounds": rounds, "paths": rows,
            "rerank_over_embeddings_documents_per_s": ratio, "max_score_difference": max(differences)}  # fmt: skip


def summarise(total: dict) -> dict:
    docs = total["documents"]
    return {**total, "documents_per_s": docs / total["wall_s"],
            "server_cpu_ms_per_document": 1e3 * total["server_cpu_s"] / docs,
            "client_cpu_ms_per_document": 1e3 * total["client_cpu_s"] / docs,
            "cpu_ms_per_document": 1e3 * (total["server_cpu_s"] + total["client_cpu_s"]) / docs}  # fmt: skip
