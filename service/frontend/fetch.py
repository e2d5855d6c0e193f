"""Remote media by URL (the OpenAI image_url and video_url parts): only from what FUSIONSERVE_URL_ALLOW_HOSTS names.

A server that fetches any URL it is sent is a request-forgery hole (cloud metadata endpoints, cluster-internal
services), so a remote URL is refused unless the allow-list names its scheme, host and port
(service/url_policy.py: https on 443 unless an entry says otherwise), and its host must resolve to a public
address or one the allow-list names; the connection goes to that checked address (its IP in the URL, the name in
the Host header and in TLS's SNI and certificate check), so DNS cannot switch it between check and connect.
Fetches are bounded like an upload: concurrent, each within the request's deadline (at most FETCH_TIMEOUT_S),
and FUSIONSERVE_MAX_UPLOAD_BYTES for all of one request's files together; no redirects (a redirect could leave
the allow-list), no proxy from the environment (the operator named hosts to be reached directly).

Every upstream failure (a status, a refused or reset connection, a name that does not resolve, a timeout) is
one message to the client: which of them happened would tell a caller which ports of an allowed host are open.
The reason goes to the log, with the URL's query and user info left out (presigned URLs carry their
signature there), as does httpx's own "HTTP Request:" line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx

from service.errors import DeadlineExceeded, FusionError, InvalidInput, PayloadTooLarge
from service.settings import Settings
from service.url_policy import (
    AddressRefused,
    allowed_literal_addresses,
    allowed_origins,
    origin_of,
    pinned_address,
)

ALLOW_SETTING = "FUSIONSERVE_URL_ALLOW_HOSTS"
FETCH_TIMEOUT_S = 10.0  # the longest one fetch may take, whatever the request's deadline
log = logging.getLogger("fusionserve")


def redacted(url: httpx.URL | str) -> str:
    """`url` without its user info and query (where credentials and signatures travel)."""
    parsed = httpx.URL(str(url))
    query = "?<redacted>" if parsed.query else ""
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None)) + query


class RedactedUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; this filter logs it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redacted(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True


logging.getLogger("httpx").addFilter(RedactedUrls())  # at import: the first fetch is logged redacted too


@dataclass
class Remote:
    """One URL to fetch, and where its bytes go: `target.<attribute>` (a RawItem's image, say)."""

    url: httpx.URL
    field: str
    target: object
    attribute: str


def _refused(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}; send the file inline as a data: URL", field=field)


def allowed_url(url: str, settings: Settings, field: str) -> httpx.URL:
    """`url` parsed, when the allow-list names its scheme, host and port; InvalidInput naming `field` otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InvalidInput(f"{field}: not a valid URL ({error})", field=field) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        message = "send a data: URL (data:image/png;base64,..., data:video/mp4;base64,...) or an http(s) URL"
        raise InvalidInput(f"{field}: {message}", field=field)
    allowed = allowed_origins(tuple(settings.url_allow_hosts))
    origin = origin_of(parsed.scheme, parsed.host, parsed.port)
    if origin in allowed:
        return parsed
    same_host = [str(entry) for entry in allowed if entry.host == origin.host]
    if same_host:
        message = f"{origin} is not allowed: {ALLOW_SETTING} allows {origin.host!r} only as {', '.join(same_host)}"
        raise _refused(field, message)
    names = ", ".join(sorted(str(entry) for entry in allowed)) or "none"
    message = f"remote URLs are refused unless {ALLOW_SETTING} names their host; {parsed.host!r} is not allowed"
    raise _refused(field, f"{message} (allowed: {names})")


class Fetcher:
    """Fetches one request's remote files concurrently under one byte budget and the request's deadline."""

    def __init__(self, settings: Settings, deadline: float):
        self.limit = self.remaining = settings.max_upload_bytes
        self.named = allowed_literal_addresses(tuple(settings.url_allow_hosts))
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

    def _failed(self, remote: Remote, reason: str) -> InvalidInput:
        log.warning("fetch for %s of %s failed: %s", remote.field, redacted(remote.url), reason)
        message = (
            f"{remote.field}: the file could not be fetched (the host did not answer 200 with it within "
            f"{FETCH_TIMEOUT_S:g} s); the server's log says why"
        )
        return InvalidInput(message, field=remote.field)

    async def _fetch(self, client: httpx.AsyncClient, remote: Remote) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):  # the whole fetch, not each read: a slow drip stops too
                port = origin_of(remote.url.scheme, remote.url.host, remote.url.port).port
                address = await pinned_address(remote.url.host, port, self.named)
                return await self._download(client, remote, address)
        except (TimeoutError, httpx.TimeoutException):
            if self.deadline_bound:
                message = f"{remote.field}: the request's deadline passed while fetching the file"
                raise DeadlineExceeded(message, field=remote.field) from None
            raise self._failed(remote, f"took longer than {FETCH_TIMEOUT_S:g} s") from None
        except AddressRefused as refused:
            log.warning("fetch for %s of %s refused: %s", remote.field, redacted(remote.url), refused)
            message = f"{remote.url.host!r} resolves to no public address, and {ALLOW_SETTING} names none of its"
            raise _refused(
                remote.field, f"{message} addresses (private, loopback and link-local are refused)"
            ) from None
        except (httpx.HTTPError, OSError) as error:  # OSError: the name does not resolve
            raise self._failed(remote, f"{type(error).__name__}: {error}") from None

    async def _download(self, client: httpx.AsyncClient, remote: Remote, address: str) -> bytes:
        # to the address just checked; the name goes in the Host header and TLS's SNI (and certificate check)
        pinned = remote.url.copy_with(host=address)
        headers = {"Host": remote.url.netloc.decode("ascii").rpartition("@")[2]}
        extensions = {"sni_hostname": remote.url.host} if remote.url.scheme == "https" else {}
        async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            if response.status_code != 200:
                redirect = " (a redirect: not followed)" if response.is_redirect else ""
                raise self._failed(remote, f"HTTP {response.status_code}{redirect}")
            chunks = []
            async for chunk in response.aiter_bytes():  # decoded bytes, counted: a gzip bomb stops too
                self.remaining -= len(chunk)
                if self.remaining < 0:
                    raise self._too_large(remote)
                chunks.append(chunk)
        return b"".join(chunks)
