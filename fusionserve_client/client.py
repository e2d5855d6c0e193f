"""`Client` and `AsyncClient`: the v1 API (docs/protocols.md, v1) over httpx, answers as dataclasses, errors
as exceptions.

One item goes as multipart (files as they are, no base64); several go as one JSON `{"inputs": [...]}` so the
server batches them together. Both classes build the same requests (`_Requests`) and differ only in how
they send them and wait between retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from fusionserve_client.calls import Item, Segmenting, _batch, _body, _Call, _model_path, _params
from fusionserve_client.errors import ConnectionFailed, error_from_response
from fusionserve_client.inputs import multipart_files
from fusionserve_client.results import Classification, ModelInfo, classifications, model_info
from fusionserve_client.search import SearchCalls

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "fusionserve-client/0.1.0"
MAX_RETRY_WAIT_S = 60.0  # a server asking for a longer pause than this is not waited for: the 429 is raised
__all__ = ["DEFAULT_URL", "AsyncClient", "Client", "Item"]


class _Requests:
    """What both clients share: connection settings, the requests, the retry rule, the answer → result."""

    def __init__(self, url: str, api_key: str | None, timeout: float | None, retries: int):
        if retries < 0:
            raise ValueError(f"retries must be ≥ 0, got {retries}")
        self.url, self.retries = url, retries
        self.http_options: dict[str, Any] = {
            "base_url": url,
            "timeout": timeout,
            "headers": {"user-agent": USER_AGENT} | ({"authorization": f"Bearer {api_key}"} if api_key else {}),
        }

    def _classify_one(self, model, media: dict, top_k, version, explain, cut: Segmenting) -> _Call:
        params = _params(version, top_k=top_k, explain="true" if explain else None) | cut.params()
        return _Call("POST", _model_path(model, "classify"), params, files=multipart_files(**media))

    def _classify_many(self, model, items, top_k, version, explain, cut: Segmenting) -> _Call:
        params = _params(version, top_k=top_k, explain="true" if explain else None) | cut.params()
        return _Call("POST", _model_path(model, "classify"), params, json=_batch(items))

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to hand the response back as it is."""
        if response.status_code != 429 or attempt >= self.retries:
            return None
        retry_after = error_from_response(response).retry_after
        delay = 0.5 * 2**attempt if retry_after is None else retry_after  # no header: exponential backoff
        return delay if delay <= MAX_RETRY_WAIT_S else None

    def _request_kwargs(self, call: _Call) -> dict:
        return {"params": call.params, "files": call.files, "json": call.json}

    def _transport_error(self, error: httpx.TransportError) -> ConnectionFailed:
        kind = "timeout" if isinstance(error, httpx.TimeoutException) else "connection_failed"
        return ConnectionFailed(None, kind, f"{self.url}: {str(error) or type(error).__name__}")


def _ready(response: httpx.Response) -> bool:
    if response.status_code in (200, 503):  # /readyz: 503 is a real answer (loading, draining)
        return response.status_code == 200
    raise error_from_response(response)


class Client(_Requests, SearchCalls):
    """Synchronous client. `retries` > 0 retries a 429 after its Retry-After (off by default)."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float | None = 30.0,
                 retries: int = 0, transport: httpx.BaseTransport | None = None):  # fmt: skip
        super().__init__(url, api_key, timeout, retries)
        self._http = httpx.Client(transport=transport, **self.http_options)

    def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **self._request_kwargs(call))
            except httpx.TransportError as error:
                raise self._transport_error(error) from error
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return response
            time.sleep(delay)
            attempt += 1

    def _answer(self, call: _Call | None, parse, empty=None) -> Any:
        return empty if call is None else parse(_body(self._send(call)))

    def classify(self, model: str, image: Any = None, audio: Any = None, text: str | None = None, video: Any = None,
                 *, top_k: int = 5, version: str | None = None, explain: bool = False,
                 segment_s: float | None = None, overlap_s: float | None = None) -> Classification:  # fmt: skip
        """One item; a video answers per segment too (`.segments`), cut by segment_s / overlap_s."""
        media = {"image": image, "audio": audio, "text": text, "video": video}
        call = self._classify_one(model, media, top_k, version, explain, Segmenting(segment_s, overlap_s))
        return classifications(_body(self._send(call)))[0]

    def classify_batch(self, model: str, items: Iterable[Item], *, top_k: int = 5, version: str | None = None,
                       explain: bool = False, segment_s: float | None = None,
                       overlap_s: float | None = None) -> list[Classification]:  # fmt: skip
        call = self._classify_many(model, list(items), top_k, version, explain, Segmenting(segment_s, overlap_s))
        return classifications(_body(self._send(call))) if call.json["inputs"] else []

    def models(self) -> list[ModelInfo]:
        return [model_info(m) for m in _body(self._send(_Call("GET", "/v1/models")))["models"]]

    def model(self, name: str) -> ModelInfo:
        return model_info(_body(self._send(_Call("GET", f"/v1/models/{quote(name, safe='')}"))))

    def ready(self) -> bool:
        """/readyz: every configured model loaded and warm, and the server not draining."""
        return _ready(self._send(_Call("GET", "/readyz")))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Requests, SearchCalls):
    """The same API as `Client`, awaitable (one httpx.AsyncClient: connections are pooled)."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float | None = 30.0,
                 retries: int = 0, transport: httpx.AsyncBaseTransport | None = None):  # fmt: skip
        super().__init__(url, api_key, timeout, retries)
        self._http = httpx.AsyncClient(transport=transport, **self.http_options)

    async def _send(self, call: _Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **self._request_kwargs(call))
            except httpx.TransportError as error:
                raise self._transport_error(error) from error
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return response
            await asyncio.sleep(delay)
            attempt += 1

    async def _answer(self, call: _Call | None, parse, empty=None) -> Any:
        return empty if call is None else parse(_body(await self._send(call)))

    async def classify(self, model: str, image: Any = None, audio: Any = None, text: str | None = None,
                       video: Any = None, *, top_k: int = 5, version: str | None = None, explain: bool = False,
                       segment_s: float | None = None, overlap_s: float | None = None) -> Classification:  # fmt: skip
        media = {"image": image, "audio": audio, "text": text, "video": video}
        call = self._classify_one(model, media, top_k, version, explain, Segmenting(segment_s, overlap_s))
        return classifications(_body(await self._send(call)))[0]

    async def classify_batch(self, model: str, items: Iterable[Item], *, top_k: int = 5, version: str | None = None,
                             explain: bool = False, segment_s: float | None = None,
                             overlap_s: float | None = None) -> list[Classification]:  # fmt: skip
        call = self._classify_many(model, list(items), top_k, version, explain, Segmenting(segment_s, overlap_s))
        return classifications(_body(await self._send(call))) if call.json["inputs"] else []

    async def models(self) -> list[ModelInfo]:
        return [model_info(m) for m in _body(await self._send(_Call("GET", "/v1/models")))["models"]]

    async def model(self, name: str) -> ModelInfo:
        return model_info(_body(await self._send(_Call("GET", f"/v1/models/{quote(name, safe='')}"))))

    async def ready(self) -> bool:
        return _ready(await self._send(_Call("GET", "/readyz")))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
