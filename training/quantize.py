"""`--quantize int8`: a second bundle <name>-int8/<version>/ whose encoders are dynamically quantised
(onnxruntime.quantization.quantize_dynamic), and its test accuracy against the fp32 bundle.

There is no torch reference for an int8 graph, so the int8 bundle's golden outputs are what its own ORT
graphs produce for the golden inputs: its load-time parity check proves self-consistency (same files,
same preprocessing, batching-invariant), not agreement with torch. The accuracy change below is what
measures the cost of quantisation: both bundles run the whole test split through service.preprocess and
onnxruntime (training.bundle_check.OrtBundle), same code path, only the encoder files differ.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from service import manifest as mf
from training.bundle_check import BundleCheckError, OrtBundle, server_check, server_golden_error, write_bundle_manifest
from training.data.features import raw_inputs
from training.data.specs import preprocess_for, served_preprocess
from training.metrics import classification_metrics, subset_name, subsets
from training.model_card import render_model_card
from training.publishing import publishing

# Transformer encoders: quantise the MatMuls (nearly all their compute) to int8. EfficientNet-Lite0 is all
# convolutions, and ORT's dynamic ConvInteger (uint8 weights only) ran ~5x slower than the fp32 graph on CPU
# in our measurement, so the packaged image encoder stays fp32; a chosen Hugging Face image encoder (ViT, DINOv2,
# CLIP; ConvNeXt's pointwise layers) is MatMuls too. Convolutions (a waveform encoder's feature encoder) stay fp32.
QUANTIZED_OPS = ["MatMul"]


def int8_modalities(cfg, modalities: list[str]) -> list[str]:
    """The encoders `--quantize int8` quantises: text and audio, and image when it is a Hugging Face model.
    video_pool.onnx stays fp32: one D → 1 score and a weighted sum (D + 1 weights), nothing to gain."""
    return [m for m in plain(modalities) if m != "image" or cfg.image_encoder]


def plain(modalities: list[str]) -> list[str]:
    """The modalities with an encoder of their own (a video runs through the image and audio encoders, and the
    accuracy comparison below scores the items of those)."""
    return [m for m in modalities if m != "video"]


def quantize_graph(src: Path, dst: Path) -> None:
    """One encoder graph's MatMul weights to int8, per channel, 7-bit (onnxruntime quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a "consider pre-processing" advice per model
    try:
        # per-channel scales: per-tensor int8 cost MiniLM 3.2 points of text-only accuracy. reduce_range
        # (7-bit weights) avoids the u8×s8 saturation of CPUs without VNNI: on tridigits' text it
        # turned a −1.6 point change into +0.9 (onnxruntime's own advice for such CPUs)
        quantize_dynamic(src, dst, op_types_to_quantize=QUANTIZED_OPS, weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True)  # fmt: skip
    finally:
        root.setLevel(level)


def quantize_encoders(src: Path, dst: Path, manifest: mf.Manifest, modalities: list[str]) -> None:
    """Quantise the encoders of `modalities` in place in dst (a copy of src)."""
    for modality in modalities:
        file = getattr(manifest.encoders, modality).file
        quantize_graph(src / file, dst / file)


def ort_embeddings(bundles: list[OrtBundle], examples: list, specs, batch: int = 16) -> list[tuple[dict, dict]]:
    """Per bundle: ({modality: {example id: embedding [D]}}, {modality: seconds in ORT}). Each chunk of inputs
    is decoded once and run through every bundle (same inputs, a chunk at a time in memory)."""
    results = [({}, {}) for _ in bundles]  # specs: the bundle's preprocessing (specs.served_preprocess)
    for modality in plain(list(bundles[0].encoders)):
        having = [e for e in examples if getattr(e, modality) is not None]
        for out, seconds in results:
            out[modality], seconds[modality] = {}, 0.0
        for start in range(0, len(having), batch):
            chunk = having[start : start + batch]
            arrays = [raw_inputs(e, modality, specs) for e in chunk]
            for bundle, (out, seconds) in zip(bundles, results, strict=True):
                began = time.perf_counter()
                rows = bundle.embed(modality, arrays)  # [B, D]
                seconds[modality] += time.perf_counter() - began
                out[modality].update((e.id, row) for e, row in zip(chunk, rows, strict=True))
    return results


def ort_accuracy(bundle: OrtBundle, embedded: tuple[dict, dict], examples: list, labels: list[str]) -> dict:
    """Test accuracy per modality subset from the bundle's ORT embeddings (ort_embeddings) and its fusion."""
    embeddings, seconds = embedded
    index, modalities = {label: i for i, label in enumerate(labels)}, plain(bundle.manifest.modalities())
    result = {"ort_seconds": seconds}
    for subset in subsets(modalities):
        having = [e for e in examples if all(getattr(e, m) is not None for m in subset)]
        stacked = {m: np.stack([embeddings[m][e.id] for e in having]) for m in subset} if having else {}
        logits = bundle.fuse(stacked, len(having)) if having else np.zeros((0, len(labels)))
        target = np.array([index[e.label] for e in having], dtype=np.int64)
        result[subset_name(subset)] = classification_metrics(logits.argmax(1), target, len(labels))
    return result


def self_golden(dst: Path, manifest: mf.Manifest, threads: int) -> list[mf.GoldenExample]:
    """The int8 graphs' own outputs for the golden inputs, as the server computes them (its check's report)."""
    report = server_check(dst, threads)
    if "outputs" not in report:
        raise BundleCheckError(f"{dst}: the server cannot load the int8 bundle: {report['reason']}")
    return [
        mf.GoldenExample(inputs=example.inputs, outputs=mf.GoldenOutput(**outputs))
        for example, outputs in zip(manifest.golden, report["outputs"], strict=True)
    ]


def _summary(fp32: dict, int8: dict, names: list[str], quantized: list[str]) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    rows = ["| subset | fp32 % | int8 % | change (points) |", "|---|---|---|---|"]
    for name in names:
        a, b = fp32[name]["accuracy"], int8[name]["accuracy"]
        change = "–" if a is None or b is None else f"{100 * (b - a):+.1f}"
        rows.append(f"| {name} | {pct(a)} | {pct(b)} | {change} |")
    before, after = fp32["ort_seconds"], int8["ort_seconds"]
    speed = ", ".join(f"{m} {before[m]:.1f} s → {after[m]:.1f} s" for m in before)
    kept = "the fusion stays fp32" if "image" in quantized else ("the image encoder (all convolutions: dynamic "
                                                                  "ConvInteger is slower than fp32 on CPU) and the "
                                                                  "fusion stay fp32")  # fmt: skip
    return "\n".join([
        "Encoders quantised with onnxruntime `quantize_dynamic` (MatMul weights int8, per channel): "
        f"{', '.join(quantized)}; {kept}. "
        "Both bundles ran the whole test split through the server's preprocessing and onnxruntime (CPU). "
        "The int8 bundle's golden examples are its own outputs (a self-consistency check, not parity with torch).",
        "", *rows, "", f"Encoder time over the test split (ORT, batch 16): {speed}.",
    ])  # fmt: skip


def publish_int8(src: Path, data, report: dict, cfg, overwrite: bool) -> tuple[Path, dict]:
    """Publish <name>-int8/<version>/ (the version of `src`) whole (publishing.py); return it and the comparison."""
    model_dir = cfg.model_dir("-int8")
    with publishing(model_dir, src.name, overwrite) as staged:
        comparison = quantize_bundle(src, data, report, cfg, staged)
    return model_dir / src.name, comparison


def quantize_bundle(src: Path, data, report: dict, cfg, dst: Path) -> dict:
    """Write the int8 version of `src` into `dst` (<name>-int8/<version>/); return the accuracy comparison."""
    manifest = mf.read_manifest(src / "manifest.json")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    quantized = int8_modalities(cfg, manifest.modalities())
    quantize_encoders(src, dst, manifest, quantized)
    base = manifest.model_dump(exclude={"files", "metrics"}) | {"name": dst.parent.name}
    test = data.examples["test"]
    bundles = [OrtBundle(src, cfg.threads), OrtBundle(dst, cfg.threads)]
    embedded = ort_embeddings(bundles, test, served_preprocess(preprocess_for(cfg)))
    fp32, int8 = (ort_accuracy(b, e, test, data.labels) for b, e in zip(bundles, embedded, strict=True))
    names = [subset_name(s) for s in subsets(plain(manifest.modalities()))]
    comparison = {"quantized": quantized, "fp32": fp32, "int8": int8, "summary": _summary(fp32, int8, names, quantized)}
    card = render_model_card(report | {"int8": comparison}, cfg, data).replace(
        f"# {cfg.name} ", f"# {cfg.name}-int8 ", 1
    )
    (dst / "model_card.md").write_text(card, encoding="utf-8")
    write_bundle_manifest(dst, base, {})  # new hashes (int8 encoders, card); golden outputs still fp32 (below)
    base["golden"] = self_golden(dst, manifest, cfg.threads)
    metrics = {"int8_vs_fp32": {k: v for k, v in comparison.items() if k != "summary"}, "golden": "self-consistency"}
    write_bundle_manifest(dst, base, metrics)
    error = server_golden_error(dst, cfg.threads)
    if not error <= manifest.golden_tolerance:
        raise RuntimeError(f"{dst}: int8 golden self-consistency failed ({error:.3g})")
    return comparison
