"""A video item through the model (docs/architecture.md "A video item"; docs/bundle-format.md "Video").

A video asks three components before fusion: each kept frame goes to the IMAGE encoder (one submission per
frame, so frames share batches with requests' images), each segment's sound to the AUDIO encoder, and each
segment's frame embeddings [K,D] to the bundle's temporal pooling (the "video" component). Fusion then runs
G + 1 rows: one per segment (its video slots plus the item's other modalities, the same in every row) and the
clip's (the L2-normalised mean of the segments' slot embeddings). `VideoItem` is that bookkeeping for one item,
shared by the batched path (pipeline.Pipeline) and the direct one (pipeline.run_direct), so the two compute the
same thing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from service.engine.components import FusionOutput, item_length
from service.items import BatchInfo, ItemResult, PreparedItem, SegmentResults, VideoArrays
from service.manifest import VIDEO_SLOTS

VIDEO = "video"  # the component that pools a segment's frame embeddings, and the item's modality
EPS = 1e-12  # as the exported graphs' L2 normalisation: an all-zero mean stays zero


def normalise(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), EPS)).astype(np.float32)


@dataclass
class VideoItem:
    """One video item's requests to the components, and their answers as they arrive."""

    item: PreparedItem
    video: VideoArrays
    pools: bool  # the bundle has the image encoder and the pooling graph: frames are encoded
    hears: bool  # the bundle has the audio encoder: each segment's sound is encoded
    frame_embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # frame n → [D]
    pooled: dict[int, np.ndarray] = field(default_factory=dict)  # segment → video_frames [D]
    sound: dict[int, np.ndarray] = field(default_factory=dict)  # segment → video_audio [D]

    @classmethod
    def of(cls, item: PreparedItem, components) -> VideoItem:
        """`components`: the encoders by name (those a bundle lacks are simply not asked)."""
        video = VideoArrays(*item.arrays[VIDEO])  # the wire delivers a plain tuple of its five arrays
        return cls(item, video, "image" in components and VIDEO in components, "audio" in components)

    @property
    def others(self) -> list[str]:
        """The item's modalities besides the video: encoded once, in every fusion row."""
        return [m for m in self.item.modalities if m != VIDEO]

    def frame_inputs(self) -> list[np.ndarray]:
        return list(self.video.frames) if self.pools else []  # [3,S,S] each

    def sound_inputs(self) -> dict[int, np.ndarray]:
        """Segment → its sound [C,T] without the zero padding; segments without sound have none."""
        if not self.hears:
            return {}
        lengths = self.video.audio_length.tolist()
        return {row: self.video.audio[row, :, :length] for row, length in enumerate(lengths) if length > 0}

    def pool_inputs(self) -> dict[int, np.ndarray]:
        """Segment → its frames' embeddings [K,D] (frame_embeddings filled), for segments that have frames."""
        if not self.frame_embeddings:
            return {}
        stacked = np.stack([self.frame_embeddings[n] for n in range(len(self.frame_embeddings))])  # [N,D]
        segment = self.video.frame_segment
        return {int(row): stacked[segment == row] for row in np.unique(segment)}

    def segment_slots(self, row: int) -> dict[str, np.ndarray]:
        slots = {"video_frames": self.pooled.get(row), "video_audio": self.sound.get(row)}
        return {slot: e for slot, e in slots.items() if e is not None}

    def clip_slots(self) -> dict[str, np.ndarray]:
        """The clip's video slots: per slot, the normalised mean over the segments that have it."""
        by_slot = zip(VIDEO_SLOTS, (self.pooled, self.sound), strict=True)
        return {slot: normalise(np.mean(list(rows.values()), axis=0)) for slot, rows in by_slot if rows}

    def fusion_inputs(self, others: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """G segment rows, then the clip's row; `others`: the item's other modalities' embeddings."""
        segments = [others | self.segment_slots(row) for row in range(self.video.segments)]
        return [*segments, others | self.clip_slots()]

    def result(
        self, others: dict[str, np.ndarray], outputs: list[FusionOutput], batches: dict[str, BatchInfo]
    ) -> ItemResult:
        """Fusion's G + 1 rows → the item's result: the clip's answer, and each segment's in `segments`."""
        *rows, clip = outputs
        return ItemResult(self.item.modalities, clip.probabilities, clip.fused, others | self.clip_slots(),
                          clip.modality_probabilities, batches, self._segments(rows))  # fmt: skip

    def _segments(self, rows: list[FusionOutput]) -> SegmentResults:
        count, (dim,), (classes,) = len(rows), rows[0].fused.shape, rows[0].probabilities.shape
        by_slot = dict(zip(VIDEO_SLOTS, (self.pooled, self.sound), strict=True))
        present = np.array([[row in by_slot[slot] for slot in VIDEO_SLOTS] for row in range(count)], bool)  # [G,2]
        embeddings = {
            slot: np.stack([by_row.get(row, np.zeros(dim, np.float32)) for row in range(count)])  # [G,D]
            for slot, by_row in by_slot.items() if by_row
        }  # fmt: skip
        heads = {
            slot: np.stack([r.modality_probabilities.get(slot, np.zeros(classes, np.float32)) for r in rows])
            for slot in embeddings
            if any(slot in r.modality_probabilities for r in rows)
        }  # fmt: skip  [G,C] each
        bounds = np.asarray(self.video.bounds, np.float32)  # [G,2]
        probabilities = np.stack([r.probabilities for r in rows])  # [G,C]
        return SegmentResults(bounds, probabilities, np.stack([r.fused for r in rows]), present, embeddings, heads)


def slowest(batches: dict[str, BatchInfo], component: str, info: BatchInfo) -> None:
    """A video item runs in many batches of one component: the slowest is its critical path there."""
    known = batches.get(component)
    if known is None or info.queue_s + info.infer_s > known.queue_s + known.infer_s:
        batches[component] = info


async def all_of(coroutines) -> list:
    """Run concurrently; the first failure cancels the rest and is raised itself (callers want the real
    error: 429, 504…), not an exception group."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


class BatchedVideo:
    """A video item through the pipeline's batchers: its other modalities, its frames then their pooling,
    and its sound, concurrently; then its G + 1 fusion rows. Each step's payloads go to their batcher in one
    `submit_many` (one timer and no task per frame), each still an item of its own in the batches. Never
    fused inside an encoder's call."""

    def __init__(self, batchers: dict, encoders: dict, item: PreparedItem, deadline: float):
        self.batchers, self.encoders, self.deadline = batchers, encoders, deadline
        self.video, self.batches = VideoItem.of(item, encoders), {}

    async def run(self) -> ItemResult:
        video = self.video
        others, *_ = await all_of([self._others(), self._frames(), self._sound()])
        outputs = await self._submit("fusion", video.fusion_inputs(others))
        return video.result(others, outputs, self.batches)

    async def _submit(self, component: str, payloads: list) -> list:
        """The payloads' answers from `component`'s batcher (encoders' embeddings, fusion's outputs)."""
        batcher = self.batchers[component]
        if component == "fusion":
            answers = await batcher.submit_many(payloads, [1] * len(payloads), deadline=self.deadline)
        else:
            spec = self.encoders[component].spec
            lengths = [item_length(component, payload, spec) for payload in payloads]
            encoded = [(payload, False) for payload in payloads]  # never fused in the encoder's call
            answers = await batcher.submit_many(encoded, lengths, deadline=self.deadline)
        for _, info in answers:
            slowest(self.batches, component, info)
        outputs = [output for output, _ in answers]
        return outputs if component == "fusion" else [output.embedding for output in outputs]

    async def _others(self) -> dict[str, np.ndarray]:
        names = self.video.others
        embeddings = await all_of([self._submit(m, [self.video.item.arrays[m]]) for m in names])
        return {name: embedding for name, (embedding,) in zip(names, embeddings, strict=True)}

    async def _frames(self) -> None:
        frames = await self._submit("image", self.video.frame_inputs()) if self.video.pools else []
        self.video.frame_embeddings = dict(enumerate(frames))
        stacks = self.video.pool_inputs()
        pooled = await self._submit(VIDEO, list(stacks.values())) if stacks else []
        self.video.pooled = dict(zip(stacks, pooled, strict=True))

    async def _sound(self) -> None:
        sounds = self.video.sound_inputs()
        embeddings = await self._submit("audio", list(sounds.values())) if sounds else []
        self.video.sound = dict(zip(sounds, embeddings, strict=True))
