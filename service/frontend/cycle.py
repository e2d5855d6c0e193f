"""One request's cycle, whatever protocol carried it (DataPlane.serve, in the style of MLServer's DataPlane.infer):

    track → check → judge (404 / 429) → read the body → admit → decode → watch for the caller leaving →
    infer → encode → stage metrics

A request counts as load and holds its version from admission, once its body is read (by its deadline:
api/body.py), so a slow body takes neither a slot nor the version.

A protocol supplies a Codec — its checks, decode and encode — and its error shape (the app's FusionError
handler for HTTP, api/errors.py; `abort` for gRPC); the cycle itself is written once. Server-Timing comes
from the Served it returns. Types only here (dataplane.py runs the cycle), so protocols import them without
importing the data plane's machinery.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from service.items import ItemResult, PreparedItem, RawItem
from service.metrics import VIDEO_STAGES, Metrics
from service.models import VersionState


@dataclass(frozen=True)
class Call:
    """What a request asks of the data plane before its body is read."""

    model: str
    version: str | None  # None: the newest ready version
    endpoint: str  # the endpoint label of fusionserve_requests_*
    explain: bool = False  # per-modality heads wanted: refused at admission if the version has none


@dataclass
class Admitted:
    """A request whose body is read, let in for `state`; it holds one in-flight slot until the `admit` block
    ends."""

    model: str
    state: VersionState


@dataclass
class Decoded:
    """A request's body, decoded after admission: its items and its deadline (time.monotonic() based)."""

    items: list[RawItem]
    deadline: float


@dataclass
class Inference:
    items: list[PreparedItem]
    results: list[ItemResult]


class Codec(Protocol):
    """One request of one protocol: a fresh object per request, so decode can leave state for encode."""

    def check(self) -> None:
        """Before the body: what needs no model (malformed headers, option syntax, draining)."""

    async def read_body(self) -> None:
        """After the door, before admission: read the body off the wire (what needs no model)."""

    async def decode(self, admitted: Admitted) -> Decoded:
        """After admission: validate the body for the model (a FusionError names the field)."""

    def watch(self) -> asyncio.Future | None:
        """Started after decode; completes when the caller has gone (None: never). Cancelled at the end."""

    def encode(self, admitted: Admitted, done: Inference) -> Any:
        """The protocol's answer (rendered, so serialisation counts as postprocess)."""


@dataclass
class Served:
    body: Any  # what Codec.encode returned
    inference: Inference
    total_s: float  # from the start of the cycle to the encoded answer

    def server_timing(self) -> str:
        """The Server-Timing header: decode (and a video's decoding stages: video-probe, video-frames,
        video-audio, the slowest item's each), queue, infer, total (ms) and the batch sizes the items ran in."""
        items, results = self.inference.items, self.inference.results
        parts = [f"decode;dur={max(i.decode_s for i in items) * 1000:.2f}"]
        for key, stage in VIDEO_STAGES.items():
            spent = [i.stats[key] for i in items if key in i.stats]
            if spent:
                parts.append(f"{stage.replace('_', '-')};dur={max(spent) * 1000:.2f}")
        parts += [
            f"queue;dur={max(r.queue_s for r in results) * 1000:.2f}",
            f"infer;dur={max(r.infer_s for r in results) * 1000:.2f}",
            f"total;dur={self.total_s * 1000:.2f}",
        ]
        for name in sorted({name for r in results for name in r.batches}):
            sizes = ",".join(str(r.batches[name].size) for r in results if name in r.batches)
            parts.append(f'batch-{name};desc="{sizes}"')
        return ", ".join(parts)


def record_stages(metrics: Metrics, model: str, done: Inference, post_s: float) -> None:
    for item in done.items:
        metrics.stage_duration.labels(model, "decode", "+".join(item.modalities)).observe(item.decode_s)
        if "video" in item.modalities:
            metrics.video_decoded(model, item.stats)
    metrics.stage_duration.labels(model, "postprocess", "all").observe(post_s)
