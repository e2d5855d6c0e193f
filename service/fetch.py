"""Remote media by URL (the OpenAI image_url part): only from the hosts FUSIONSERVE_URL_ALLOW_HOSTS names.

A server that fetches any URL it is sent is a request-forgery hole (cloud metadata endpoints, cluster-internal
services), so remote URLs are refused unless the operator allow-listed their host. Fetches from allowed hosts
are bounded like an upload: concurrent, each within the request's deadline (at most FETCH_TIMEOUT_S), and
FUSIONSERVE_MAX_UPLOAD_BYTES for all of one request's files together; no redirects (a redirect could leave the
allow-list), no proxy from the environment (the operator named hosts to be reached directly).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from service.errors import DeadlineExceeded, FusionError, InvalidInput, PayloadTooLarge
from service.settings import Settings

ALLOW_SETTING = "FUSIONSERVE_URL_ALLOW_HOSTS"
FETCH_TIMEOUT_S = 10.0  # the longest one fetch may take, whatever the request's deadline


@dataclass
class Remote:
    """One URL to fetch, and where its bytes go: `target.<attribute>` (a RawItem's image, say)."""

    url: httpx.URL
    field: str
    target: object
    attribute: str


def allowed_url(url: str, settings: Settings, field: str) -> httpx.URL:
    """`url` parsed, when it is http(s) and its host is allow-listed; InvalidInput naming `field` otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidInput(f"{field}: not a valid URL ({error})", field=field) from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidInput(f"{field}: send a data: URL (data:image/png;base64,...) or an http(s) URL", field=field)
    allowed = {host.lower() for host in settings.url_allow_hosts}
    if parsed.host.lower() not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise InvalidInput(
            f"{field}: remote URLs are refused unless {ALLOW_SETTING} names their host; {parsed.host!r} is not "
            f"allowed (allowed: {names}); send the file inline as a data: URL",
            field=field,
        )
    return parsed


class Fetcher:
    """Fetches one request's remote files concurrently under one byte budget and the request's deadline."""

    def __init__(self, settings: Settings, deadline: float):
        self.limit = self.remaining = settings.max_upload_bytes
        left = deadline - time.monotonic()
        self.timeout = max(0.001, min(FETCH_TIMEOUT_S, left))
        self.deadline_bound = left < FETCH_TIMEOUT_S  # a timeout then is the request's deadline passing

    async def fetch_all(self, remotes: list[Remote]) -> None:
        if not remotes:
            return
        try:
            async with (
                httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
                asyncio.TaskGroup() as group,  # the first failure cancels the other fetches
            ):
                tasks = [group.create_task(self._fetch(client, remote)) for remote in remotes]
        except ExceptionGroup as failures:
            first = failures.exceptions[0]
            raise first if isinstance(first, FusionError) else failures from None
        for remote, task in zip(remotes, tasks, strict=True):
            setattr(remote.target, remote.attribute, task.result())

    def _too_large(self, remote: Remote) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"{remote.field}: the files fetched for this request exceed {self.limit} bytes in all "
            "(FUSIONSERVE_MAX_UPLOAD_BYTES)",
            field=remote.field,
        )

    async def _fetch(self, client: httpx.AsyncClient, remote: Remote) -> bytes:
        where = f"{remote.field}: fetching {remote.url}"
        try:
            async with asyncio.timeout(self.timeout):  # the whole fetch, not each read: a slow drip stops too
                return await self._download(client, remote, where)
        except (TimeoutError, httpx.TimeoutException):
            if self.deadline_bound:
                raise DeadlineExceeded(f"{where}: the request's deadline passed", field=remote.field) from None
            raise InvalidInput(f"{where} took longer than {FETCH_TIMEOUT_S:g} s", field=remote.field) from None
        except httpx.HTTPError as error:
            raise InvalidInput(f"{where} failed: {error}", field=remote.field) from None

    async def _download(self, client: httpx.AsyncClient, remote: Remote, where: str) -> bytes:
        async with client.stream("GET", remote.url) as response:
            if response.status_code != 200:
                hint = " (redirects are not followed)" if response.is_redirect else ""
                raise InvalidInput(f"{where} answered HTTP {response.status_code}{hint}", field=remote.field)
            chunks = []
            async for chunk in response.aiter_bytes():  # decoded bytes, counted: a gzip bomb stops too
                self.remaining -= len(chunk)
                if self.remaining < 0:
                    raise self._too_large(remote)
                chunks.append(chunk)
        return b"".join(chunks)
