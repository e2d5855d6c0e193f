"""The joint-space calls of `Client` and `AsyncClient` (docs/client.md, "Search"): embed with `dimensions` and
encodings, zero-shot against the caller's labels, rerank and score across modalities.

Each method builds its request and hands it to the client's `_answer(call, parse, empty)`: `Client` answers at
once, `AsyncClient` returns an awaitable of the same result, so both share one definition of every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fusionserve_client.calls import Item, Segmenting, _batch, _Call, _model_path, _params
from fusionserve_client.content import content
from fusionserve_client.encodings import encoding
from fusionserve_client.inputs import multipart_files
from fusionserve_client.results import Embedding, embeddings
from fusionserve_client.search_results import Rerank, Score, ZeroShot, rerank, scores, zero_shots

Template = str | Mapping[str, str]  # one for every modality, or per modality (image, text, audio, video)
Query = str | Item  # a text, or an item of any modalities (sent as a content array)


def _labels(labels: Iterable[str]) -> list[str]:
    if isinstance(labels, str):  # "cat,dog" would otherwise go as one label per character
        raise TypeError("labels must be a list of str, not one str (split it: labels.split(','))")
    labels = list(labels)
    bad = [type(label).__name__ for label in labels if not isinstance(label, str)]
    if bad:
        raise TypeError(f"labels must all be str, got {', '.join(sorted(set(bad)))}")
    return labels


def _zero_shot_json(items: list[Item], labels: list[str], template: Template | None) -> dict:
    body = _batch(items) | {"labels": labels}
    if template is None:
        return body
    return body | {"template": dict(template) if isinstance(template, Mapping) else template}


def _model_ref(model: str, version: str | None) -> str:
    return model if version is None else f"{model}:{version}"


class SearchCalls:
    """Mixed into Client and AsyncClient, which define `_answer`."""

    def _answer(self, call: _Call | None, parse, empty=None) -> Any:
        raise NotImplementedError

    def embed(self, model: str, image: Any = None, audio: Any = None, text: str | None = None, video: Any = None,
              *, version: str | None = None, segment_s: float | None = None, overlap_s: float | None = None,
              dimensions: int | None = None, truncate: str | None = None,
              embedding_types: str | Sequence[str] | None = None,
              encoding_format: str | None = None) -> Embedding:  # fmt: skip
        """One item's fused and per-slot embeddings; `dimensions` a trained prefix (any with truncate="force");
        with embedding_types / encoding_format every vector is a numpy array (a dict type → array for a list)."""
        coding = encoding(dimensions, truncate, embedding_types, encoding_format)
        params = _params(version) | Segmenting(segment_s, overlap_s).params() | coding.params()
        media = {"image": image, "audio": audio, "text": text, "video": video}
        call = _Call("POST", _model_path(model, "embed"), params, files=multipart_files(**media))
        return self._answer(call, lambda body: embeddings(body, coding.decode)[0])

    def embed_batch(self, model: str, items: Iterable[Item], *, version: str | None = None,
                    segment_s: float | None = None, overlap_s: float | None = None, dimensions: int | None = None,
                    truncate: str | None = None, embedding_types: str | Sequence[str] | None = None,
                    encoding_format: str | None = None) -> list[Embedding]:  # fmt: skip
        coding = encoding(dimensions, truncate, embedding_types, encoding_format)
        params = _params(version) | Segmenting(segment_s, overlap_s).params() | coding.params()
        body = _batch(items)
        call = _Call("POST", _model_path(model, "embed"), params, json=body) if body["inputs"] else None
        return self._answer(call, lambda answer: embeddings(answer, coding.decode), [])

    def zero_shot(self, model: str, labels: Iterable[str], image: Any = None, audio: Any = None,
                  text: str | None = None, video: Any = None, *, template: Template | None = None,
                  version: str | None = None) -> ZeroShot:  # fmt: skip
        """One item against `labels` (through the text encoder into the joint space): every label, best first."""
        # JSON, not multipart: a form takes a field per label, and forms have few parts (FUSIONSERVE_MAX_FORM_PARTS)
        media = {"image": image, "audio": audio, "text": text, "video": video}
        if all(value is None for value in media.values()):
            raise ValueError("give at least one of image, audio, text, video")
        body = _zero_shot_json([media], _labels(labels), template)
        call = _Call("POST", _model_path(model, "zero-shot"), _params(version), json=body)
        return self._answer(call, lambda answer: zero_shots(answer)[0])

    def zero_shot_batch(self, model: str, items: Iterable[Item], labels: Iterable[str], *,
                        template: Template | None = None, version: str | None = None) -> list[ZeroShot]:  # fmt: skip
        body = _zero_shot_json(list(items), _labels(labels), template)
        call = _Call("POST", _model_path(model, "zero-shot"), _params(version), json=body) if body["inputs"] else None
        return self._answer(call, zero_shots, [])

    def rerank(self, model: str, query: Query, documents: Iterable[Query], *, top_n: int | None = None,
               return_documents: bool = False, version: str | None = None) -> Rerank:  # fmt: skip
        """The documents by cosine with the query in the joint space, best first (top_n of them)."""
        body: dict[str, Any] = {
            "model": _model_ref(model, version),
            "query": content(query, "query"),
            "documents": [content(doc, f"documents[{i}]") for i, doc in enumerate(documents)],
            "return_documents": bool(return_documents),
        }
        if top_n is not None:
            body["top_n"] = top_n
        return self._answer(_Call("POST", "/v1/rerank", json=body), rerank)

    def score(self, model: str, first: Query | Sequence[Query], second: Query | Sequence[Query], *,
              version: str | None = None) -> list[Score]:  # fmt: skip
        """Cosine of pairs: one vs one, one vs many, or many vs as many (pairwise), in the pairs' order."""
        body = {"model": _model_ref(model, version), "text_1": _side(first, "text_1"),
                "text_2": _side(second, "text_2")}  # fmt: skip
        return self._answer(_Call("POST", "/v1/score", json=body), scores)


def _side(value: Query | Sequence[Query], where: str) -> Any:
    if isinstance(value, str | Mapping):
        return content(value, where)
    return [content(v, f"{where}[{i}]") for i, v in enumerate(value)]
