"""One item through the model: present modalities → their encoder batchers (concurrently) → fusion.

An item with {image, audio} enters only the image and audio queues: no compute on absent inputs. A video item
asks the image, audio and pooling batchers, then fusion once per segment and once for the clip (video_run.py).
`run_direct` is the same computation without batchers (golden replay, warm-up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from service.engine.batch_window import plan_batches
from service.engine.batcher import DELIVER_CHUNK, Batcher, BatchPolicy
from service.engine.components import (
    EncoderComponent,
    EncodeThenFuse,
    FusionComponent,
    FusionOutput,
    item_length,
)
from service.engine.video_run import VIDEO, BatchedVideo, VideoItem
from service.errors import NotReady
from service.items import BatchInfo, ItemResult, PreparedItem
from service.metrics import Metrics, observe_repeated
from service.modalities.registry import get as modality_spec
from service.settings import Settings
from service.threads import lower_priority
from service.tracing import spans


def policy_for(component: str, settings: Settings) -> BatchPolicy:
    spec = modality_spec(component)  # None for fusion, which has no padding budget
    # Fusion waits for no one (max delay 0: the imminent-arrival rule never holds a batch there): the items
    # of an encoder batch resolve in the same event-loop tick, so they reach the fusion queue together anyway.
    delay_ms = 0.0 if component == "fusion" else settings.max_queue_delay_ms
    return BatchPolicy(
        max_batch_size=settings.batch_size_for(component),
        max_delay_s=delay_ms / 1000,
        max_queue=settings.max_queued_items,
        budget=spec.budget(settings) if spec is not None else None,
    )


class InlineFusionMetrics:
    """Counts a fusion batch run inside an encoder's call (EncodeThenFuse) like the fusion batcher's own.
    Its own object, not a method of the pipeline: the encoders' batchers hold it, and a pipeline they
    could reach would be a reference cycle that a frozen heap never frees (service/engine/heap.py)."""

    def __init__(self, metrics: Metrics, model: str):
        self._size = metrics.batch_size.labels(model=model, component="fusion")
        self._queue = metrics.stage_duration.labels(model=model, stage="queue", modality="fusion")
        self._infer = metrics.stage_duration.labels(model=model, stage="infer", modality="fusion")

    def __call__(self, rows: int, infer_s: float) -> None:
        self._size.observe(rows)
        observe_repeated(self._queue, 0.0, rows)
        observe_repeated(self._infer, infer_s, rows)


class Pipeline:
    def __init__(
        self,
        model: str,
        encoders: dict[str, EncoderComponent],
        fusion: FusionComponent,
        settings: Settings,
        metrics: Metrics,
        answer_chunk: int | None = DELIVER_CHUNK,
    ):
        self.encoders, self.fusion = encoders, fusion
        count_fusion = InlineFusionMetrics(metrics, model)
        fused_inline = {m: EncodeThenFuse(e, fusion, count_fusion) for m, e in encoders.items()}
        components = {**fused_inline, "fusion": fusion}
        # one worker thread per component: ORT parallelises inside a call; components overlap
        self._executor = ThreadPoolExecutor(
            len(components), thread_name_prefix=f"ort-{model}", initializer=lower_priority,
            initargs=(settings.compute_nice,),
        )  # fmt: skip
        self._active, self._idle = 0, asyncio.Event()  # items between submit and result
        self._idle.set()
        self.batchers = {
            name: Batcher(
                name, model, run, policy_for(name, settings), metrics, self._executor, answer_chunk=answer_chunk
            )
            for name, run in components.items()
        }
        self.retired: str | None = None  # why this pipeline no longer runs (close): what late callers get

    async def start(self) -> None:
        for batcher in self.batchers.values():
            await batcher.start()

    async def stop(self) -> None:
        """Drain: queued items finish; encoders first, then fusion once no item is between the two."""
        if self.retired is not None:  # closed: nothing left to drain
            return
        for name, batcher in self.batchers.items():
            if name != "fusion":
                await batcher.stop()
        await self._idle.wait()
        await self.batchers["fusion"].stop()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def close(self, reason: str) -> None:
        """Stop at once (queued items too, answered 503 `reason`) and let go of the batchers and components,
        so the sessions are freed even while a late request still holds this pipeline."""
        self.retired = reason
        for batcher in self.batchers.values():
            await batcher.abort(NotReady(reason))
        self._executor.shutdown(wait=False)  # a batch already in onnxruntime ends in its thread
        self.batchers, self.encoders, self.fusion = {}, {}, None

    async def run(self, item: PreparedItem, deadline: float) -> ItemResult:
        if self.retired is not None:
            raise NotReady(self.retired)
        self._active += 1
        self._idle.clear()
        try:
            return await self._run(item, deadline)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _run(self, item: PreparedItem, deadline: float) -> ItemResult:
        if VIDEO in item.arrays:
            return await BatchedVideo(self.batchers, self.encoders, item, deadline).run()
        encoded, batches = await self._encode(item, deadline)
        embeddings = {m: e.embedding for m, e in encoded.items()}
        (first,) = encoded.values() if len(encoded) == 1 else (None,)
        if first is not None and first.fusion is not None:  # fused inside its encoder's batch call
            output, batches["fusion"] = first.fusion, BatchInfo(first.fused_rows, 0.0, first.fusion_s)
            spans.inline_fusion(first.fused_rows, first.fusion_s)
        else:
            output, batches["fusion"] = await self.batchers["fusion"].submit(embeddings, deadline=deadline)
        return item_result(item, embeddings, output, batches)

    def _submit(self, item: PreparedItem, modality: str, deadline: float):
        payload = (item.arrays[modality], len(item.modalities) == 1)
        length = item_length(modality, item.arrays[modality], self.encoders[modality].spec)
        return self.batchers[modality].submit(payload, length=length, deadline=deadline)

    async def _encode(self, item: PreparedItem, deadline: float) -> tuple[dict, dict[str, BatchInfo]]:
        """Each present modality's encoding and the batch it ran in; one modality (the common case) needs no
        task of its own, several run concurrently and one failure cancels the others."""
        if len(item.modalities) == 1:
            (modality,) = item.modalities
            encoded, batch = await self._submit(item, modality, deadline)
            return {modality: encoded}, {modality: batch}
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {m: group.create_task(self._submit(item, m, deadline)) for m in item.modalities}
        except BaseExceptionGroup as failures:  # callers want the first real error (429, 504…)
            raise failures.exceptions[0] from None
        return {m: task.result()[0] for m, task in tasks.items()}, {m: task.result()[1] for m, task in tasks.items()}

    def run_direct(self, items: list[PreparedItem]) -> list[ItemResult]:
        """run_direct in the batches this pipeline's batchers would cut (warm-up: a video's frames must not
        grow the image encoder's arena past the largest batch its batcher forms)."""
        specs = {name: encoder.spec for name, encoder in self.encoders.items()}
        cuts = {name: partial(batcher_cut, name, b.policy, specs.get(name)) for name, b in self.batchers.items()}
        return run_direct(self.encoders, self.fusion, items, cuts)


Cut = Callable[[list], list[list[int]]]  # payloads → the indices of each batch they run in


def batcher_cut(name: str, policy: BatchPolicy, spec, payloads: list) -> list[list[int]]:
    """How `name`'s batcher cuts payloads queued at once: windows of max_batch_size in arrival order, each
    planned by the padding budget (batch_window.plan_batches); `spec`: the encoder's (None: fusion)."""
    lengths = [1 if spec is None else item_length(name, payload, spec) for payload in payloads]
    size = policy.max_batch_size
    return [
        [start + index for index in group]
        for start in range(0, len(lengths), size)
        for group in plan_batches(lengths[start : start + size], size, policy.budget)
    ]


def run_direct(
    encoders: dict[str, EncoderComponent],
    fusion: FusionComponent,
    items: list[PreparedItem],
    cuts: dict[str, Cut] | None = None,
) -> list[ItemResult]:
    """The pipeline's computation, synchronously (no queues, no deadlines): every item's inputs of a modality
    and the video items' frames (image) and segments' sound (audio) together, then the segments' pooling, then
    every fusion row; each component in one call, or in the batches `cuts` makes of its payloads."""
    cuts = cuts or {}
    videos = {row: VideoItem.of(item, encoders) for row, item in enumerate(items) if VIDEO in item.arrays}
    per_item: list[dict[str, np.ndarray]] = [{} for _ in items]
    for modality, encoder in encoders.items():
        if modality == VIDEO:
            continue
        asks = [(item.arrays[modality], partial(per_item[r].__setitem__, modality))
                for r, item in enumerate(items) if modality in item.arrays]  # fmt: skip
        for video in videos.values():
            if modality == "image":
                asks += [
                    (f, partial(video.frame_embeddings.__setitem__, n)) for n, f in enumerate(video.frame_inputs())
                ]
            elif modality == "audio":
                asks += [(s, partial(video.sound.__setitem__, row)) for row, s in video.sound_inputs().items()]
        _answer(encoder, asks, cuts.get(modality))
    if VIDEO in encoders:
        stacks = [
            (s, partial(v.pooled.__setitem__, row)) for v in videos.values() for row, s in v.pool_inputs().items()
        ]
        _answer(encoders[VIDEO], stacks, cuts.get(VIDEO))
    rows = [videos[r].fusion_inputs(per_item[r]) if r in videos else [per_item[r]] for r in range(len(items))]
    outputs = iter(_call(fusion, [row for item_rows in rows for row in item_rows], cuts.get("fusion")))
    return [
        videos[r].result(per_item[r], [next(outputs) for _ in rows[r]], {}) if r in videos
        else item_result(item, per_item[r], next(outputs))
        for r, item in enumerate(items)
    ]  # fmt: skip


def _call(component: Callable[[list], list], payloads: list, cut: Cut | None) -> list:
    """`component` on the payloads, in the batches `cut` makes (None: one), answers in the payloads' order."""
    if not payloads:
        return []
    answers: list = [None] * len(payloads)
    for group in cut(payloads) if cut is not None else [list(range(len(payloads)))]:
        for index, answer in zip(group, component([payloads[i] for i in group]), strict=True):
            answers[index] = answer
    return answers


def _answer(component: Callable[[list], list], asks: list[tuple[object, Callable]], cut: Cut | None) -> None:
    """`component` on every payload (_call); each answer handed to its payload's sink."""
    for (_, put), answer in zip(asks, _call(component, [payload for payload, _ in asks], cut), strict=True):
        put(answer)


def item_result(
    item: PreparedItem,
    embeddings: dict[str, np.ndarray],
    output: FusionOutput,
    batches: dict[str, BatchInfo] | None = None,
) -> ItemResult:
    """Fusion's output (probabilities computed batch-wise in FusionComponent) → one item's result."""
    return ItemResult(item.modalities, output.probabilities, output.fused, embeddings,
                      output.modality_probabilities, batches or {})  # fmt: skip
