"""Does fusing a clip's frames with its sound beat either alone? Measured on the served default bundle.

For every test-split tridigits clip that has both a picture and a sound track, each segment's answer through the
real server app (v1 classify, explain=true): the fused label, and the frames' and the sound's own calibrated heads
(the per-slot evidence) — the same segments for all three, so the comparison is like for like.

    python -m bench.video_fusion [--model-dir models] [--data data/tridigits/dataset.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.frontend.app import create_app
from service.settings import Settings
from training.data.dataset import Example, load_dataset
from training.data.video_rows import segment_label

OUT = Path("bench/results/video/fusion.json")


def clips(data: Path) -> list[Example]:
    """The test split's clips without a text beside them."""
    return [e for e in load_dataset(data, check_media=False) if e.split == "test" and e.video and e.text is None]


def score(client: TestClient, model: str, clip: Example, tally: dict) -> None:
    files = {"video": ("clip.mp4", Path(clip.video).read_bytes(), "video/mp4")}
    answer = client.post(f"/v1/models/{model}/classify?explain=true", files=files)
    answer.raise_for_status()
    for seg in answer.json()["results"][0]["segments"]:
        if sorted(seg["modalities"]) != ["video_audio", "video_frames"]:
            continue  # a segment without both halves says nothing about their fusion
        truth = segment_label(clip, seg["start_s"], seg["end_s"])  # as training labels it
        heads = {e["modality"]: e["label"] for e in seg["evidence"]}
        for name, label in (("fused", seg["labels"][0]["label"]), ("frames", heads["video_frames"]),
                            ("sound", heads["video_audio"])):  # fmt: skip
            tally[name] += label == truth
        tally["segments"] += 1


def wait_ready(client: TestClient, model: str, timeout_s: float = 300.0) -> None:
    """The version loads (verify, golden replay, warm-up) after start-up; answers before that are 503."""
    give_up = time.monotonic() + timeout_s
    while client.get(f"/v2/models/{model}/ready").status_code != 200:
        if time.monotonic() > give_up:
            raise SystemExit(f"{model} not ready after {timeout_s:.0f} s")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--data", default="data/tridigits/dataset.jsonl")
    args = parser.parse_args(argv)
    data = Path(args.data)
    tally = {"segments": 0, "fused": 0, "frames": 0, "sound": 0}
    started = time.perf_counter()
    with TestClient(create_app(Settings(model_dir=Path(args.model_dir), models=[args.model]))) as client:
        wait_ready(client, args.model)
        for clip in clips(data):
            score(client, args.model, clip, tally)
    n = tally["segments"]
    result = {"command": " ".join(["python -m bench.video_fusion", *(argv or sys.argv[1:])]), "segments": n,
              "accuracy_percent": {k: round(100 * tally[k] / n, 1) for k in ("fused", "frames", "sound")},
              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
