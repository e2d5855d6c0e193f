"""Export a trained fused model as a servable bundle (DESIGN §3) and prove the server reproduces torch.

models/<name>/<version>/: <m>_encoder.onnx (pretrained backbone + the trained projection), fusion.onnx,
tokenizer.json (MiniLM's, padding off: the server pads per batch), model_card.md + PNGs, manifest.json.
Golden examples are real test items (raw media, base64) whose outputs torch computes from the raw bytes
through service.preprocess; the bundle is then loaded by the server's own loader (`python -m service check`,
a subprocess: training never imports the server) and the golden examples replayed, and export fails if any
output differs by more than the tolerance.
"""

from __future__ import annotations

import base64
import shutil
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from service import manifest as mf
from training.bundle_check import server_check
from training.data.features import PreprocessSpecs, collate, content, decode, default_preprocess
from training.export_encoders import OPSET, ParityError, export_encoder, ort_session
from training.model.backbones import EncoderWithProjection, build_encoder
from training.model.fused import FusedModel
from training.model.fusion import Fusion, FusionGraph

TOLERANCE = 1e-4
# all three, then each encoder alone, then pairs: the first four already exercise every encoder and the masking
GOLDEN_SUBSETS = (
    ("image", "text", "audio"), ("image",), ("text",), ("audio",),
    ("image", "audio"), ("text", "audio"), ("image", "text"),
)  # fmt: skip
CARD_FILES = ("model_card.md", "training_curves.png", "confusion_matrix.png")
ENCODER_SPECS = {"image": mf.ImageEncoder, "text": mf.TextEncoder, "audio": mf.AudioEncoder}


def all_subsets_present(batch_rows: int, m: int) -> torch.Tensor:
    """[batch_rows, M] present masks cycling through every non-empty subset (bit patterns 1 .. 2^M - 1)."""
    codes = torch.arange(batch_rows) % (2**m - 1) + 1
    return ((codes[:, None] >> torch.arange(m)) & 1).float()


def export_fusion(fusion: Fusion, path: Path, tolerance: float = 1e-5) -> tuple[mf.FusionSpec, float]:
    """fusion.onnx: "<m>_embedding" [batch,D] per modality + "present" [batch,M] → logits, fused."""
    graph, names = FusionGraph(fusion).eval(), [f"{m}_embedding" for m in fusion.modalities]
    m, dim = len(fusion.modalities), fusion.dim
    example = (*torch.randn(m, 3, dim, generator=torch.Generator().manual_seed(0)), all_subsets_present(3, m))
    axes = {name: {0: "batch"} for name in [*names, "present", "logits", "fused"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (torch is pinned)
        torch.onnx.export(
            graph, example, str(path), dynamo=False, opset_version=OPSET, input_names=[*names, "present"],
            output_names=["logits", "fused"], dynamic_axes=axes, do_constant_folding=True,
        )  # fmt: skip
    diff = fusion_parity(graph, path, m, dim)
    if not diff <= tolerance:
        raise ParityError(f"fusion: ORT vs torch max |diff| {diff:.3g} > {tolerance:g}")
    f32 = "float32"
    inputs = [mf.TensorSpec(name=n, dtype=f32, shape=["batch", dim]) for n in names]
    inputs.append(mf.TensorSpec(name="present", dtype=f32, shape=["batch", m]))
    outputs = [
        mf.TensorSpec(name="logits", dtype=f32, shape=["batch", fusion.n_classes]),
        mf.TensorSpec(name="fused", dtype=f32, shape=["batch", dim]),
    ]
    spec = mf.FusionSpec(
        file=path.name, strategy=fusion.strategy, modalities=fusion.modalities, inputs=inputs, outputs=outputs
    )
    return spec, diff


def fusion_parity(graph: FusionGraph, path: Path, m: int, dim: int, rows: int = 17) -> float:
    """Max |ORT − torch| on one batch of `rows` (≠ the export batch) covering every modality subset."""
    g = torch.Generator().manual_seed(1)
    embeddings = [torch.nn.functional.normalize(torch.randn(rows, dim, generator=g), dim=-1) for _ in range(m)]
    present = all_subsets_present(rows, m)
    with torch.no_grad():
        expected = [t.numpy() for t in graph(*embeddings, present)]
    session = ort_session(path)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), [*embeddings, present], strict=True)}
    got = session.run(["logits", "fused"], feeds)
    return max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))


def trained_encoder(model: FusedModel, modality: str) -> EncoderWithProjection:
    """Packaged backbone (with its fine-tuned blocks, if any) + the projection head the fused model learned."""
    encoder = build_encoder(modality, dim=model.dim, tuned=model.backbone_state.get(modality))
    encoder.proj.load_state_dict(model.projections[modality].state_dict())
    return encoder.eval()


def _encoder_inputs(examples: list, modality: str, specs: PreprocessSpecs):
    """Export example (2 real items) + check sets (1 item; 3 items of other lengths, padded)."""
    having = [e for e in examples if getattr(e, modality) is not None][:6]
    arrays = [decode(content(e, modality), modality, specs) for e in having]
    if len(arrays) < 2:
        raise ValueError(f"need at least 2 examples with {modality} to export its encoder")
    checks = [collate(modality, arrays[2:3] or arrays[:1])] + ([collate(modality, arrays[3:6])] if arrays[3:] else [])
    return collate(modality, arrays[:2]), checks


def export_encoders(model: FusedModel, examples: list, bundle: Path, specs: PreprocessSpecs, progress: bool):
    """→ ({modality: manifest encoder spec}, {modality: max |diff|}, {modality: torch encoder})."""
    from tqdm import tqdm

    specs_out, diffs, encoders = {}, {}, {}
    for modality in tqdm(model.modalities, desc="export encoders", unit="encoder", disable=not progress):
        encoder = trained_encoder(model, modality)
        example, checks = _encoder_inputs(examples, modality, specs)
        result = export_encoder(encoder, modality, bundle / f"{modality}_encoder.onnx", example, checks, TOLERANCE)
        preprocess = getattr(specs, modality)
        spec_cls = ENCODER_SPECS[modality]
        specs_out[modality] = spec_cls(
            file=result.path.name, inputs=result.inputs, outputs=result.outputs, preprocess=preprocess
        )
        diffs[modality], encoders[modality] = result.max_abs_diff, encoder
    return specs_out, diffs, encoders


def write_tokenizer(specs: PreprocessSpecs, path: Path) -> None:
    """MiniLM's tokenizer.json with padding disabled (it ships Fixed-128 padding, which would make the
    server pad every text to 128 tokens); truncation stays at the spec's max length."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(specs.tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=specs.text.max_length)
    tokenizer.save(str(path))


def pick_golden(examples: list, modalities: list[str], count: int) -> list[tuple[object, tuple[str, ...]]]:
    """(example, subset) pairs: different subsets, distinct real test items having those modalities."""
    chosen, used = [], set()
    wanted = [tuple(m for m in s if m in modalities) for s in GOLDEN_SUBSETS]
    for subset in dict.fromkeys(s for s in wanted if s):
        item = next((e for e in examples if e.id not in used and all(getattr(e, m) for m in subset)), None)
        if item is not None and len(chosen) < count:
            chosen.append((item, subset))
            used.add(item.id)
    return chosen


@torch.no_grad()
def torch_reference(model: FusedModel, encoders: dict, example, subset, specs: PreprocessSpecs) -> mf.GoldenExample:
    """Golden example: raw inputs of `subset` and what torch computes from the raw bytes, item alone."""
    embeddings, raw = {}, {}
    for m in subset:
        raw[m] = content(example, m)
        inputs = collate(m, [decode(raw[m], m, specs)])  # service.preprocess, as the server does
        embeddings[m] = encoders[m](*inputs)  # [1,D]
    zeros = torch.zeros(1, model.dim)
    present = torch.tensor([[float(m in subset) for m in model.modalities]])  # [1,M]
    logits, fused = model.fusion({m: embeddings.get(m, zeros) for m in model.modalities}, present)
    b64 = {m: base64.b64encode(raw[m]).decode("ascii") for m in ("image", "audio") if m in raw}
    text = example.text if "text" in subset else None
    inputs = mf.GoldenInput(image_b64=b64.get("image"), audio_b64=b64.get("audio"), text=text)
    outputs = mf.GoldenOutput(
        probabilities=torch.softmax(logits[0].double(), -1).tolist(),
        fused=fused[0].tolist(),
        embeddings={m: e[0].tolist() for m, e in embeddings.items()},
    )
    return mf.GoldenExample(inputs=inputs, outputs=outputs)


def server_golden_error(bundle: Path, threads: int = 2) -> float:
    """The server's own loader replays the golden examples (`python -m service check`) → max |server − torch|."""
    report = server_check(bundle, threads)
    if report.get("golden_max_error") is None:
        raise ParityError(f"{bundle}: the server cannot load the bundle: {report.get('reason')}")
    return float(report["golden_max_error"])


def write_bundle_manifest(bundle: Path, base: dict, metrics: dict) -> mf.Manifest:
    """Hash every file in the bundle directory (all but manifest.json) and write manifest.json."""
    files = sorted(p.name for p in bundle.iterdir() if p.is_file() and p.name != "manifest.json")
    manifest = mf.Manifest(**base, files={f: mf.sha256_file(bundle / f) for f in files}, metrics=metrics)
    mf.write_manifest(manifest, bundle / "manifest.json")
    return manifest


def export_bundle(model: FusedModel, data, cfg, report: dict, run_dir: Path, bundle: Path | None = None) -> dict:
    """Write and verify the bundle; returns the parity record (also stored in manifest metrics)."""
    from training.model_card import manifest_metrics, render_model_card

    specs, bundle = default_preprocess(), Path(bundle or cfg.bundle_dir())
    shutil.rmtree(bundle, ignore_errors=True)  # never mix files of two exports
    bundle.mkdir(parents=True)
    test = data.examples["test"]
    others = [e for split in ("val", "train") for e in data.examples.get(split, [])]  # if test lacks a modality
    encoders, diffs, torch_encoders = export_encoders(model, test + others, bundle, specs, cfg.progress)
    fusion_spec, diffs["fusion"] = export_fusion(model.fusion, bundle / "fusion.onnx")
    if "text" in encoders:
        write_tokenizer(specs, bundle / specs.text.tokenizer_file)
    chosen = pick_golden(test, model.modalities, cfg.golden_count)
    golden = [torch_reference(model, torch_encoders, e, s, specs) for e, s in chosen]
    base = dict(
        name=bundle.parent.name, version=bundle.name, labels=data.labels, embedding_dim=model.dim,
        created=datetime.now().astimezone().isoformat(timespec="seconds"), encoders=mf.Encoders(**encoders),
        fusion=fusion_spec, golden=golden, golden_tolerance=TOLERANCE,
        description=f"{cfg.name}: {fusion_spec.strategy} fusion of {', '.join(model.modalities)}",
    )  # fmt: skip
    parity = {"export_max_abs_diff": diffs, "golden_subsets": [e.inputs.modalities() for e in golden]}
    for _ in range(2):  # the card shows the measured parity: write, replay, re-render, replay again
        report["parity"] = parity
        (bundle / "model_card.md").write_text(render_model_card(report, cfg, data), encoding="utf-8")
        for name in CARD_FILES[1:]:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, bundle / name)
        write_bundle_manifest(bundle, base, manifest_metrics(report))
        error = server_golden_error(bundle, cfg.threads)
        if not error <= TOLERANCE:
            raise ParityError(f"{bundle}: server golden replay differs from torch by {error:.3g} > {TOLERANCE:g}")
        parity = parity | {"server_golden_max_abs_diff": error}
    return parity
