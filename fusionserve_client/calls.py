"""What `Client`, `AsyncClient` and their search calls share: a request as data (`_Call`), the v1 paths and query
options, a batch body, and the answer → body or typed error (docs/client.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from fusionserve_client.errors import error_from_response
from fusionserve_client.inputs import json_item

Item = Mapping[str, Any]  # {"image": ..., "audio": ..., "text": ..., "video": ...}: any non-empty subset


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict | None = None
    files: dict | list | None = None
    json: dict | None = None


def _model_path(model: str, endpoint: str) -> str:
    return f"/v1/models/{quote(model, safe='')}/{endpoint}"


def _params(version: str | None, **extra: Any) -> dict:
    params = {k: v for k, v in extra.items() if v is not None}
    return params if version is None else params | {"version": version}


@dataclass(frozen=True)
class Segmenting:
    """How the server cuts a video item into segments (None: the model's default); query options of the request."""

    segment_s: float | None = None
    overlap_s: float | None = None

    def params(self) -> dict:
        return {k: v for k, v in (("segment_s", self.segment_s), ("overlap_s", self.overlap_s)) if v is not None}


def _batch(items: Iterable[Item]) -> dict:
    return {"inputs": [json_item(item, i) for i, item in enumerate(items)]}


def _body(response: httpx.Response) -> dict:
    if response.is_success:
        return response.json()
    raise error_from_response(response)
