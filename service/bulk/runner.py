"""The map_batches actor: one served bundle, loaded as the one-process server loads it, answering batches of rows.

Each actor builds the server's own objects (load_settings, Metrics, LocalBackend with its Registry: sessions,
golden replay, warm-up, batchers) and keeps one asyncio loop alive in a thread across batches, so a batch of rows
runs as concurrent requests would: prepare_item in a thread pool, then LocalBackend.run, whose batchers group
the items per encoder exactly as under HTTP load."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from service.bulk import rows
from service.bulk.sources import MediaFiles
from service.errors import FusionError
from service.items import RawItem

LOAD_TIMEOUT_S = 600


class BundleRunner:
    def __init__(self, model: str, version: str | None, task: str, input_path: str, settings: dict):
        from service.engine.local import LocalBackend
        from service.metrics import Metrics
        from service.settings import load_settings

        self.settings = load_settings(**settings)
        self.task, self.media = task, MediaFiles(input_path)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bulk-loop", daemon=True).start()
        self.pool = ThreadPoolExecutor(self.settings.preprocess_threads or 2, thread_name_prefix="bulk-prepare")
        self.backend = LocalBackend(self.settings, Metrics())
        self._call(self.backend.models.load_all(), LOAD_TIMEOUT_S)
        self.state = self.backend.models.get(model, version)  # 404 / 503 with the reason: the job fails here
        self.model, self.version = model, self.state.version
        self.manifest, self.tokenizer = self.state.bundle.manifest, self.state.bundle.tokenizer

    def _call(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = batch.to_pylist()
        outcomes = self._call(self.answer([self._raw(row) for row in records]))
        outcomes = [o if isinstance(o, Exception) else o[1] for o in outcomes]
        ids = [row.get("id") for row in records]
        out = [rows.answer_row(i, self.manifest, self.task, o) for i, o in zip(ids, outcomes, strict=True)]
        return pa.Table.from_pylist(out, schema=rows.schema(self.manifest))

    def _raw(self, row: dict) -> RawItem | FusionError:
        try:
            return rows.raw_item(row, self.media)
        except FusionError as error:
            return error

    async def answer(self, items: list) -> list:
        """Each item's (PreparedItem, ItemResult), or the exception it got (its own 4xx): one row's failure is
        that row's alone."""
        # as many in flight as the batchers queue without refusing (max_queued_items): a bulk job waits, never 429s
        gate = asyncio.Semaphore(min(self.settings.max_queued_items, 4 * self.settings.max_batch_size))
        return list(await asyncio.gather(*(self.one(item, gate) for item in items), return_exceptions=True))

    async def one(self, item, gate: asyncio.Semaphore):
        if isinstance(item, Exception):
            raise item
        async with gate:
            prepared = await self.prepare(item)
            deadline = time.monotonic() + self.settings.default_deadline_ms / 1000  # from its start, not the batch's
            return prepared, (await self.backend.run(self.model, self.version, [prepared], deadline))[0]

    async def prepare(self, item: RawItem):
        from service.preprocess.prepare import prepare_item

        loop = asyncio.get_running_loop()
        args = (item, self.manifest, self.tokenizer, self.settings, None)
        return await loop.run_in_executor(self.pool, prepare_item, *args)

    def __del__(self):
        loop = getattr(self, "loop", None)
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self.backend.stop(), loop)
            loop.call_soon_threadsafe(loop.stop)
