"""The model card's video section: accuracy from a clip's frames alone, its sound alone and both, per segment
and per clip, on the test split and the clean robustness set (training/evaluate_video.py)."""

from __future__ import annotations

NAMES = {"video_frames": "frames", "video_audio": "sound", "video_frames+video_audio": "frames + sound"}


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def video_section(video: dict | None, cfg, subsets: dict | None = None) -> list[str]:
    """`subsets`: the evaluation's per-subset metrics, for the plain image-alone and audio-alone rows beside."""
    if not video:
        return []
    lines = ["## Video", "",
             f"A clip is cut into {cfg.video_segment_s:g} s segments (overlap {cfg.video_overlap_s:g} s), each keeping "
             f"{cfg.video_fps:g} frame/s (at most {cfg.video_max_frames}); its frames go through the image encoder "
             f"and are pooled ({cfg.video_pooling}), its sound through the audio encoder. A segment is answered "
             "from its own frames and sound; the clip from the normalised mean of its segments' embeddings. "
             "Only the video's slots are given (the item's other modalities masked off).", "",
             "| set | video gives | segments | segment accuracy % | clips | clip accuracy % |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for split, parts in video.items():
        for name, segment in parts["segment"].items():
            clip = parts["clip"][name]
            lines.append(f"| {split} | {NAMES.get(name, name)} | {segment['n']} | {_pct(segment['accuracy'])} | "
                         f"{clip['n']} | {_pct(clip['accuracy'])} |")  # fmt: skip
    beside = [(m, (subsets or {}).get(m)) for m in ("image", "audio")]
    beside = [f"{m} alone {_pct(r['accuracy'])} % ({r['n']} items)" for m, r in beside if r and r["n"]]
    if beside:
        lines += ["", f"Beside them, on the same test split: {', '.join(beside)}."]
    return [*lines, ""]
