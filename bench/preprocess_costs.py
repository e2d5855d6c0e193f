"""`python -m bench.preprocess_costs`: where an item's preprocessing CPU goes, stage by stage.

Images: the bench's 224–640 px PNG photos (bench/workloads.py) and 640×480 JPEG photos (the same generator,
quality 90), through service/preprocess/image.py's own steps in order — open (sniff + header), decode, EXIF
orientation, to RGB, resize + crop, normalise — and the whole `decode_image` as the server calls it; with the
two-step path and with `single_pass` (reduced-scale JPEG decoding, one resize pass). Audio:
the bench's 1–3 s speech-like WAVs at 16 and 44.1 kHz — decode, resample, log-mel — per second of audio.
Thread CPU time (time.thread_time), median over the items, one thread: run it on a quiet machine. Results
go to --out as costs.json and costs.md with the command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import ImageOps

from bench.report import command_line, write_small_run
from bench.workloads import photo_jpeg, photo_png, speech_like_wav
from service.manifest import AudioPreprocess, ImagePreprocess
from service.preprocess import audio, image, mel

SPEC = ImagePreprocess(size=224, resize="center_crop", mean=(127.0,) * 3, std=(128.0,) * 3)
MAX_PIXELS = 40_000_000


def cpu_ms(step: Callable[[], object]) -> tuple[float, object]:
    started = time.thread_time()
    value = step()
    return (time.thread_time() - started) * 1000, value


def image_stages(data: bytes, spec: ImagePreprocess = SPEC) -> dict[str, float]:
    """Each step of decode_image, timed apart, then decode_image whole."""
    times = {}
    fmt = image.sniff_image_format(data)
    times["open"], picture = cpu_ms(lambda: image._open_checked(data, fmt, MAX_PIXELS, "image"))
    if spec.single_pass:
        image._draft(picture, spec)
    times["decode"], _ = cpu_ms(picture.load)
    times["exif"], picture = cpu_ms(lambda: ImageOps.exif_transpose(picture))
    times["to_rgb"], picture = cpu_ms(lambda: image._to_rgb(picture))
    times["resize"], picture = cpu_ms(lambda: image._resize(picture, spec))
    times["normalise"], _ = cpu_ms(lambda: image._normalise(picture, spec))
    times["whole"], _ = cpu_ms(lambda: image.decode_image(data, spec, max_pixels=MAX_PIXELS))
    return times


def audio_stages(data: bytes, spec: AudioPreprocess) -> dict[str, float]:
    """Decode, resample and log-mel, each per second of audio; decode_audio whole, per second."""
    fmt = audio.sniff_audio_format(data)
    decode_ms, (waveform, rate) = cpu_ms(lambda: audio._decode_waveform(data, fmt, 30.0, "audio"))
    seconds = waveform.shape[0] / rate
    resample_ms, waveform = cpu_ms(lambda: audio.soxr.resample(waveform, rate, spec.sample_rate, quality="HQ"))
    mel_ms, _ = cpu_ms(lambda: mel.log_mel_spectrogram(waveform, spec))
    whole_ms, _ = cpu_ms(lambda: audio.decode_audio(data, spec, max_seconds=30.0))
    times = {"decode": decode_ms, "resample": resample_ms if rate != spec.sample_rate else 0.0, "log_mel": mel_ms,
             "whole": whole_ms}  # fmt: skip
    return {f"{k}_per_s": v / seconds for k, v in times.items()} | {"resampled": float(rate != spec.sample_rate)}


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(row[key] for row in rows), 3) for key in rows[0]}


def measure(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    inputs = {"png": [photo_png(rng) for _ in range(count)], "jpeg": [photo_jpeg(rng) for _ in range(count)]}
    clips = [speech_like_wav(rng) for _ in range(count)]
    for data in inputs["png"][:3] + inputs["jpeg"][:3]:  # warm caches and lazy imports
        image_stages(data)
    result = {kind: medians([image_stages(data) for data in items]) for kind, items in inputs.items()}
    fast = SPEC.model_copy(update={"single_pass": True})  # JPEGs at a reduced DCT scale, one resize pass
    result |= {f"{kind} single_pass": medians([image_stages(d, fast) for d in items]) for kind, items in inputs.items()}
    rows = [audio_stages(clip, AudioPreprocess()) for clip in clips]
    for resampled in (0.0, 1.0):
        chosen = [row for row in rows if row["resampled"] == resampled]
        if chosen:
            result["audio_44k1" if resampled else "audio_16k"] = medians(chosen)
    return result


def markdown(result: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "", "Thread CPU ms, median over the items (audio: per second of audio).", ""]
    for kind, costs in result.items():
        if kind == "command":
            continue
        lines.append(f"- **{kind}**: " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items() if k != "resampled"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="items per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "preprocess")
    args = parser.parse_args(argv)
    command = command_line("bench.preprocess_costs", argv)
    result = measure(args.count, args.seed)
    write_small_run(args.out, "costs", command, result, markdown(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
