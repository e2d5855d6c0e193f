"""What /v1/models (and the V2 metadata built on it) says about a model: its versions and the limits, and what a
search client can ask of its joint space (docs/protocols.md, "Dimensions and encodings")."""

from __future__ import annotations

from service.frontend.api.embedding_format import available_types, zero_shot_summary
from service.manifest import Manifest
from service.models import ModelEntry, ModelTable, VersionState
from service.settings import Settings

LIMITS = ("max_upload_bytes", "max_image_pixels", "max_audio_seconds", "max_text_chars", "max_items_per_request",
          "max_video_seconds", "max_video_frames", "max_video_segments", "max_video_frame_pixels")  # fmt: skip


def joint_space_summary(manifest: Manifest) -> dict:
    """The dims a request may ask for without truncate=force, the embedding types it may ask for, and whether
    zero-shot scores are calibrated (the temperature and the fit's ECE)."""
    return {
        "dimensions": manifest.joint_space.supported_dims(manifest.embedding_dim),
        "embedding_types": available_types(manifest),
        "zero_shot": zero_shot_summary(manifest),
    }


def describe_version(state: VersionState) -> dict:
    summary = {"version": state.version, "status": state.status, "reason": state.reason}
    if state.bundle is not None:
        manifest = state.bundle.manifest
        summary.update(
            provider=state.bundle.provider, load_seconds=state.load_seconds, golden_max_error=state.golden_max_error,
            modalities=manifest.modalities(), labels=manifest.labels, embedding_dim=manifest.embedding_dim,
            fusion=manifest.fusion.strategy, explain=manifest.fusion.has_modality_logits, metrics=manifest.metrics,
            **joint_space_summary(manifest),
        )  # fmt: skip
        video = manifest.encoder("video")
        if video is not None:  # the segmentation a request gets without segment_s / overlap_s, and the sampling
            summary["video"] = video.preprocess.model_dump(
                include={"segment_s", "overlap_s", "frames_per_second", "max_frames_per_segment", "max_seconds"}
            )
    return summary


def describe_entry(entry: ModelEntry, settings: Settings) -> dict:
    ready = entry.ready_versions()
    limits = {name: getattr(settings, name) for name in LIMITS}
    return {
        "name": entry.name,
        "default_version": ready[0].version if ready else None,
        "limits": limits,
        "versions": [describe_version(v) for v in entry.versions.values()],
    }


def describe_models(registry: ModelTable) -> dict:
    """/readyz's per-model part: per version, its status, the provider in use and any failure reason."""
    return {
        e.name: {v.version: {"status": v.status, "provider": v.bundle.provider if v.bundle else None,
                             "reason": v.reason} for v in e.versions.values()}
        for e in registry.models.values()
    }  # fmt: skip
