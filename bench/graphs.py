"""`python -m bench.graphs`: plain vs optimised encoder graphs (the passes of `fusionserve optimize`).

Per modality: items/s of the plain export and of every candidate graph at batch 1 and batch 32, through
the server's own sessions (service.engine.runtime, same session options) and preprocessing, on real
inputs: tokenized hint texts like tridigits', the bundle's golden images (224x224) and 1-2 s clips as
log-mel. All graphs of a modality are timed interleaved, round by round, so a noisy neighbour slows all
alike; reported: median and best of the rounds, the speed-up vs plain (best round against best round,
and the median of per-round ratios), max |diff| vs plain, and session-creation time. The "plain (A/A)"
row times the plain graph again in a second session: its distance from 1.00 is the noise floor.
Writes results.json and results.md to --out.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.report import load_average, machine_info
from bundletools import graph_passes
from service import preprocess
from service.engine.bundle import golden_items, load_bundle
from service.engine.runtime import OrtModel
from service.settings import Settings

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "graphs"
HINTS = (
    "an even number below 7", "more than seven", "it is sieben", "digit 3", "the number four", "I think neuf",
    "between 2 and 5", "an odd number above five", "a prime number", "less than three", "cinco", "8!",
    "the number zwei", "a perfect square", "digit nove", "it is 6", "an odd number below 4", "I think twee",
    "more than 1", "between six and nine", "huit", "the number 9", "less than 5", "digit tres",
    "an even number above two", "it is zero", "I think acht", "between 0 and 3", "seis", "the numbr sevn",
    "more than four", "an odd numbr",
)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.graphs", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/tridigits/1"), help="source bundle directory")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per session (server setting)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per batch size")
    parser.add_argument("--min-s", type=float, default=0.3, help="seconds of repeated calls per graph per round")
    parser.add_argument("--batches", default="1,32", help="batch sizes")
    parser.add_argument("--modalities", default="text,audio,image")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def _wav(seconds: float, seed: int) -> bytes:
    """A tone sweep plus noise, 16 kHz int16: only its length matters to the encoder's cost."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + rng.normal(0, 0.03, t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, (np.clip(wave, -1, 1) * 32767).astype(np.int16), 16_000, format="WAV")
    return buffer.getvalue()


def bench_inputs(bundle, settings: Settings, count: int = 32) -> dict[str, list]:
    """`count` preprocessed payloads per modality; [0] is the batch-1 input."""
    golden = golden_items(bundle, settings)
    inputs: dict[str, list] = {}
    encoders = bundle.manifest.encoders
    if encoders.text is not None:
        spec = encoders.text.preprocess
        inputs["text"] = [preprocess.encode_text(h, bundle.tokenizer, spec) for h in HINTS[:count]]
    if encoders.audio is not None:
        clips = [g.arrays["audio"] for g in golden if "audio" in g.arrays]  # real spoken digits, ~1.2 s
        spec = encoders.audio.preprocess
        clips += [preprocess.decode_audio(_wav(s, i), spec, max_seconds=30) for i, s in enumerate((1.5, 2.0))]
        inputs["audio"] = (clips * count)[:count]
    if encoders.image is not None:
        images = [g.arrays["image"] for g in golden if "image" in g.arrays]
        inputs["image"] = (images * count)[:count]
    return inputs


def candidate_graphs(modality: str, plain: Path, work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """plain + every pass's output, and what each pass did (fusions, nodes, foreign operators)."""
    nodes = sum(graph_passes.op_counts(plain).values())
    # A/A control: the plain graph again in its own session. Its "speed-up" is the noise floor.
    graphs, info = {"plain": plain, "plain (A/A)": plain}, {"plain": {"nodes": nodes}, "plain (A/A)": {"nodes": nodes}}
    for name, make in graph_passes.PASSES[modality]:
        target = work / f"{modality}-{name.replace(':', '-')}.onnx"
        started = time.perf_counter()
        fusions = make(plain, target)
        graphs[name] = target
        info[name] = {
            "fusions": fusions,
            "nodes": sum(graph_passes.op_counts(target).values()),
            "foreign_ops": graph_passes.foreign_ops(target),  # non-empty: `optimize` would refuse it
            "pass_s": round(time.perf_counter() - started, 2),
        }
    return graphs, info


def measure(encoder, graphs: dict[str, Path], payloads: list, batch: int, args, settings: Settings) -> dict:
    models = {name: OrtModel(path, settings) for name, path in graphs.items()}
    feeds = encoder.feeds(payloads[:batch])
    outputs = {name: model.run(feeds)[0] for name, model in models.items()}
    seconds = graph_passes.time_interleaved(
        {name: (lambda m=model: m.run(feeds)) for name, model in models.items()}, args.rounds, args.min_s
    )
    rows = {}
    for name, values in seconds.items():
        rows[name] = {
            "items_per_s_median": round(batch / graph_passes.median(values), 2),
            "items_per_s_best": round(batch / min(values), 2),
            "ratio_best": round(graph_passes.best_speedup(seconds["plain"], values), 3),
            "ratio_paired_median": round(graph_passes.paired_speedup(seconds["plain"], values), 3),
            "max_abs_diff_vs_plain": float(np.max(np.abs(outputs[name] - outputs["plain"]))),
        }
    shape = {k: list(v.shape) for k, v in feeds.items()}
    return {"batch": batch, "feed_shapes": shape, "graphs": rows}


def load_seconds(graphs: dict[str, Path], settings: Settings, repeats: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(repeats):
        for name, path in graphs.items():
            started = time.perf_counter()
            OrtModel(path, settings)
            times[name].append(time.perf_counter() - started)
    return {name: round(graph_passes.median(v), 3) for name, v in times.items()}


def _text_target(results: dict) -> list[str]:
    """The issue's target, read off the table: text items/s >= 1.5x the plain export's at equal outputs."""
    text = results["modalities"].get("text")
    if text is None:
        return []
    lines = ["Issue target (text >= 1.5x plain, outputs within 1e-4), best optimised graph per batch size:", ""]
    for run in text["runs"]:
        rows = {
            n: r for n, r in run["graphs"].items() if not n.startswith("plain") and r["max_abs_diff_vs_plain"] <= 1e-4
        }
        name, row = max(rows.items(), key=lambda item: item[1]["ratio_best"])
        verdict = "reached" if min(row["ratio_best"], row["ratio_paired_median"]) >= 1.5 else "not reached"
        lines.append(
            f"- batch {run['batch']}: {name}, {row['ratio_best']:.2f}x (best) / "
            f"{row['ratio_paired_median']:.2f}x (paired median): {verdict}"
        )
    return lines


def render_md(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Plain vs optimised encoder graphs",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {m['date']} · commit {m['git_commit']}{' (dirty tree)' if m['git_dirty'] else ''}  ",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}; load average before/after: {results['load_before']} / {results['load_after']}  ",
        f"Bundle: {results['bundle']}; sessions as the server's, {results['threads']} intra-op threads; "
        f"{results['rounds']} interleaved rounds of ≥ {results['min_s']} s per graph and batch size.",
        "",
        "| modality | graph | nodes | batch | items/s median | items/s best | × plain best | × plain paired | "
        "max diff | load s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for modality, r in results["modalities"].items():
        for run in r["runs"]:
            for name, row in run["graphs"].items():
                foreign = r["graphs"][name].get("foreign_ops")
                label = f"{name} (not portable: {', '.join(foreign)})" if foreign else name
                lines.append(
                    f"| {modality} | {label} | {r['graphs'][name]['nodes']} | {run['batch']} | "
                    f"{row['items_per_s_median']:.1f} | {row['items_per_s_best']:.1f} | {row['ratio_best']:.2f} | "
                    f"{row['ratio_paired_median']:.2f} | "
                    f"{row['max_abs_diff_vs_plain']:.1e} | {r['load_s'][name]:.2f} |"
                )
    lines += ["", *_text_target(results), "", "Fusions per pass:", ""]
    for modality, r in results["modalities"].items():
        for name, info in r["graphs"].items():
            if "fusions" in info:
                lines.append(f"- {modality} / {name}: {json.dumps(info['fusions']) or '{}'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings(intra_op_threads=args.threads, providers="cpu", model_dir=args.bundle.parent.parent)
    bundle = load_bundle(args.bundle, settings)
    inputs = bench_inputs(bundle, settings)
    results = {
        "command": shlex.join([".venv/bin/python", "-m", "bench.graphs", *sys.argv[1:]]),
        "machine": machine_info(),
        "load_before": load_average(),
        "bundle": str(args.bundle),
        "threads": args.threads,
        "rounds": args.rounds,
        "min_s": args.min_s,
        "modalities": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for modality in args.modalities.split(","):
            encoder = bundle.encoders[modality]
            graphs, info = candidate_graphs(modality, encoder.model.path, Path(work))
            runs = [measure(encoder, graphs, inputs[modality], int(b), args, settings) for b in args.batches.split(",")]
            results["modalities"][modality] = {"graphs": info, "runs": runs, "load_s": load_seconds(graphs, settings)}
            print(f"{modality}: done", file=sys.stderr)
    results["load_after"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(render_md(results))
    print(render_md(results))


if __name__ == "__main__":
    main()
