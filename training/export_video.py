"""A video bundle's parts: video_pool.onnx (the trained TemporalPool, checked against torch), the manifest's
video encoder, frames and sound from clips to export the image and audio encoders with, and a video golden
example whose segments torch computes from the same decoded arrays the server decodes.

The server's answer for a video (service/engine/video_run.py): one fusion row per segment (its pooled frames
and its sound, plus the item's other modalities) and one for the clip, whose video slots are the normalised
mean over the segments that have them. video_reference computes exactly that in torch.
"""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from service import manifest as mf
from service.items import VideoArrays
from service.manifest import VIDEO_SLOTS
from training.data.features import collate
from training.data.video_decode import decode_clip, video_inputs
from training.export_encoders import OPSET, ParityError, ort_session
from training.model.fused import FusedModel, ServingGraph
from training.model.temporal import TemporalPool

INPUTS = ("frame_embeddings", "frame_mask")
OUTPUT = "embedding"


class PoolGraph(torch.nn.Module):
    """What video_pool.onnx computes: frame_embeddings [B,K,D], frame_mask [B,K] → embedding [B,D]."""

    def __init__(self, model: FusedModel):
        super().__init__()
        # a bundle whose clips never had frames still declares a pooling graph (the video modality needs one);
        # without the image encoder it never runs, so a parameter-free mean stands in
        self.pool = model.pool if model.pool is not None else TemporalPool(model.dim, "mean")

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(frames, mask)


def _pool_batch(rows: int, frames: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm frame embeddings, each row with 1..frames real frames (the rest padding holding noise)."""
    g = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(rows, frames, dim, generator=g), dim=-1)  # [B,K,D]
    lengths = torch.arange(rows) % frames + 1  # [B]
    return embeddings, (torch.arange(frames)[None] < lengths[:, None]).float()  # [B,K]


def export_pool(model: FusedModel, path: Path, video: mf.VideoPreprocess, tolerance: float = 1e-5):
    """video_pool.onnx → (its manifest VideoEncoder, ORT vs torch max |diff| on other batch and frame counts)."""
    graph, dim = PoolGraph(model).eval(), model.dim
    axes = {INPUTS[0]: {0: "batch", 1: "frames"}, INPUTS[1]: {0: "batch", 1: "frames"}, OUTPUT: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (torch is pinned)
        torch.onnx.export(graph, _pool_batch(3, 4, dim, 0), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=[OUTPUT], dynamic_axes=axes)  # fmt: skip
    session, diff = ort_session(path), 0.0
    for rows, frames in ((1, 1), (5, 7), (9, video.max_frames_per_segment)):
        batch = _pool_batch(rows, frames, dim, rows)
        with torch.no_grad():
            expected = graph(*batch).numpy()
        (got,) = session.run([OUTPUT], dict(zip(INPUTS, (t.numpy() for t in batch), strict=True)))
        diff = max(diff, float(np.abs(got - expected).max()))
    if not diff <= tolerance:
        raise ParityError(f"video pool: ORT vs torch max |diff| {diff:.3g} > {tolerance:g}")
    f32 = "float32"
    spec = mf.VideoEncoder(
        file=path.name, preprocess=video, pooling=graph.pool.pooling,
        inputs=[mf.TensorSpec(name=INPUTS[0], dtype=f32, shape=["batch", "frames", dim]),
                mf.TensorSpec(name=INPUTS[1], dtype=f32, shape=["batch", "frames"])],
        outputs=[mf.TensorSpec(name=OUTPUT, dtype=f32, shape=["batch", dim])],
    )  # fmt: skip
    return spec, diff


def decoded(example, model: FusedModel, specs, video: mf.VideoPreprocess) -> VideoArrays:
    """The clip as the exported bundle's server decodes it by default (its specs: uint8 frames and all)."""
    image = specs.image if "image" in model.encoders else None
    audio = specs.audio if "audio" in model.encoders else None
    return decode_clip(Path(example.video).read_bytes(), video_inputs(video, image, audio))


def clip_arrays(examples: list, modality: str, model: FusedModel, specs, video, count: int = 6) -> list[tuple]:
    """Encoder inputs from clips, for an encoder the dataset feeds only through videos: frames or sounds."""
    out = []
    for example in (e for e in examples if e.video is not None):
        clip = decoded(example, model, specs, video)
        if modality == "image":
            out += [(frame,) for frame in clip.frames]
        else:
            out += [(clip.audio[g, :, :n],) for g, n in enumerate(clip.audio_length.tolist()) if n > 0]
        if len(out) >= count:
            break
    return out[:count]


def _video_slots(clip: VideoArrays, encoders: dict, model: FusedModel) -> list[dict[str, torch.Tensor]]:
    """Per segment: {video_frames: pooled [1,D], video_audio: sound [1,D]}, the slots it has."""
    rows = [{} for _ in range(clip.segments)]
    if "video_frames" in model.modalities and len(clip.frames):
        frames = encoders["image"](torch.from_numpy(clip.frames))  # [N,D]
        for g in np.unique(clip.frame_segment).tolist():
            mine = frames[torch.from_numpy(clip.frame_segment == g)][None]  # [1,K,D]
            rows[g]["video_frames"] = model.pool(mine, torch.ones(mine.shape[:2]))
    if "video_audio" in model.modalities:
        for g, n in enumerate(clip.audio_length.tolist()):
            if n > 0:
                rows[g]["video_audio"] = encoders["audio"](*collate("audio", [(clip.audio[g, :, :n],)]))
    return rows


@torch.no_grad()
def video_reference(model: FusedModel, encoders: dict, example, others: dict, specs, video) -> tuple:
    """others: {modality: [1,D]} of the item's other inputs → (GoldenOutput with the segments, the clip's base64)."""
    clip = decoded(example, model, specs, video)
    segments = _video_slots(clip, encoders, model)
    whole = {s: F.normalize(torch.cat([r[s] for r in segments if s in r]).mean(0, keepdim=True), dim=-1)
             for s in VIDEO_SLOTS if any(s in r for r in segments)}  # fmt: skip
    rows = [others | r for r in segments] + [others | whole]
    zeros = torch.zeros(1, model.dim)
    inputs = [torch.cat([r.get(m, zeros) for r in rows]) for m in model.modalities]  # S × [G+1,D]
    present = torch.tensor([[float(m in r) for m in model.modalities] for r in rows])  # [G+1,S]
    logits, fused, heads = ServingGraph(model)(*inputs, present)
    probabilities = torch.softmax(logits.double(), -1)
    bounds = clip.bounds.tolist()
    outputs = mf.GoldenOutput(
        probabilities=probabilities[-1].tolist(), fused=fused[-1].tolist(),
        embeddings={m: e[0].tolist() for m, e in (others | whole).items()},
        modality_probabilities={m: torch.softmax(heads[-1, i].double(), -1).tolist()
                                for i, m in enumerate(model.modalities) if m in rows[-1]},
        segments=[mf.GoldenSegment(start_s=b[0], end_s=b[1], probabilities=p.tolist(), fused=f.tolist())
                  for b, p, f in zip(bounds, probabilities[:-1], fused[:-1], strict=True)],
    )  # fmt: skip
    return outputs, base64.b64encode(Path(example.video).read_bytes()).decode("ascii")
