"""`python -m bench.features`: the training feature pass (extract_features, no cache) against raw onnxruntime running
the same exported backbone.onnx on the same items, batch, device and threads, side by side in one run.

Per modality (text, image, audio of data/tridigits, the first --items items having it):
  pass-serial / pass-pool : extract_features with decode_workers=0 / the pool (decode + encode, as training does),
                            timed after one first-batch call has exported the backbone and checked it against
                            torch (onnx_runner marks it verified), so the pass runs as every later training run does
  raw-encode              : ORT session.run on already-decoded, collated batches (the encoder's ceiling)
  raw-decode+encode       : the same items decoded serially in the loop, then ORT (what a plain script would do)
items/s (wall) and CPU seconds per item (process time, all threads). Ratio = pass / raw of the same row kind.
Writes --out/README.md and results.json with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.report import command_line
from training.data.dataset import load_dataset
from training.data.decode_pool import default_workers
from training.data.features import collate, content, decode, encoder_id, extract_features
from training.data.onnx_runner import OrtFeatures, export_backbone
from training.data.specs import default_preprocess
from training.device import resolve_device
from training.model.backbones import build_backbone


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _batches(decoded: list, batch: int) -> list:
    ordered = sorted(decoded, key=lambda inputs: inputs[0].shape[-1])  # the pass sorts by length too
    return [ordered[b : b + batch] for b in range(0, len(ordered), batch)]


class _NoCache:
    """A FeatureCache that stores nothing, so every item is decoded and encoded, but whose folder holds the exported
    backbone.onnx: the pass, like a second training run, skips the export (its parity batch on torch remains)."""

    def __init__(self, root: Path):
        self.root = root

    def get_many(self, encoder: str, keys: list[str]) -> list[None]:
        return [None] * len(keys)

    def put(self, encoder: str, key: str, value) -> None:
        pass

    def flush(self) -> None:
        pass


def measure(modality: str, items: list, batch: int, device, workers: int, folder: Path) -> dict:
    specs = default_preprocess()
    backbone = build_backbone(modality).eval()
    decoded = [decode(content(e, modality), modality, specs) for e in items]  # also warms the file cache
    path = folder / encoder_id(backbone, modality, specs) / "backbone.onnx"
    with torch.no_grad():
        export_backbone(backbone, modality, collate(modality, decoded[:2]), path)
    ort = OrtFeatures(path, modality, device=device)
    ort(*collate(modality, decoded[:batch]))  # warm-up: session allocations
    rows = {}

    def raw_encode() -> None:
        for chunk in _batches(decoded, batch):
            ort(*collate(modality, chunk))

    def raw_decode_encode() -> None:
        fresh = [decode(content(e, modality), modality, specs) for e in items]
        for chunk in _batches(fresh, batch):
            ort(*collate(modality, chunk))

    def run_pass(subset: list, n: int):
        return lambda: extract_features(
            subset,
            modality,
            backbone,
            _NoCache(folder),
            batch_size=batch,
            progress=False,
            device=device,
            decode_workers=n,
        )

    for name, fn in (("raw-encode", raw_encode), ("raw-decode+encode", raw_decode_encode)):
        wall, cpu = _timed(fn)
        rows[name] = {"items_per_s": len(items) / wall, "cpu_ms_per_item": 1000 * cpu / len(items)}
    for name, n in (("pass-serial", 0), (f"pass-pool-{workers}", workers)):
        _timed(run_pass(items[:batch], n))  # once: exports and checks against torch, as a project's first run does
        wall, cpu = _timed(run_pass(items, n))  # then as every later run: the verified export, from the first batch
        rows[name] = {"items_per_s": len(items) / wall, "cpu_ms_per_item": 1000 * cpu / len(items)}
    return rows


def _table(results: dict) -> str:
    lines = ["| modality | run | items/s | CPU ms/item | vs raw decode+encode | vs raw encode |", "|---" * 6 + "|"]
    for modality, rows in results.items():
        full, enc = rows["raw-decode+encode"]["items_per_s"], rows["raw-encode"]["items_per_s"]
        for name, row in rows.items():
            rate = row["items_per_s"]
            lines.append(f"| {modality} | {name} | {rate:.1f} | {row['cpu_ms_per_item']:.1f} | "
                         f"{rate / full:.2f}× | {rate / enc:.2f}× |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/tridigits/dataset.jsonl")
    parser.add_argument("--items", type=int, default=256, help="items per modality (256: about 1 minute on 2 cores)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None, help="decode threads of the pool run (default: 2 on CPU, "
                        "decode_pool.default_workers on a GPU)")  # fmt: skip
    parser.add_argument("--modalities", default="text,image,audio")
    parser.add_argument("--out", default="bench/results/features")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    workers = args.workers if args.workers is not None else max(2, default_workers(device.type))
    examples = load_dataset(args.data)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-features-") as folder:
        for modality in args.modalities.split(","):
            having = {getattr(e, modality): e for e in reversed(examples) if getattr(e, modality) is not None}
            items = list(reversed(having.values()))[: args.items]  # distinct: the pass encodes a repeat once
            results[modality] = measure(modality, items, args.batch, device, workers, Path(folder))
            print(modality, json.dumps(results[modality]), flush=True)
    command = command_line("bench.features", argv)
    setup = (f"{args.items} distinct items per modality from {args.data}, batch {args.batch}, device {device}, "
             f"torch/ORT threads {torch.get_num_threads()}, {len(os.sched_getaffinity(0))} cores")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"command": command, "setup": setup, "results": results}, indent=1))
    text = f"# Feature pass vs raw onnxruntime\n\n`{command}`\n\n{setup}\n\n{_table(results)}\n"
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
