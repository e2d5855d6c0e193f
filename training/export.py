"""Export a trained fused model as a servable bundle (docs/bundle-format.md) and prove the server reproduces torch.

models/<name>/<version>/ (published whole by training/publishing.py): <m>_encoder.onnx (pretrained backbone +
the trained projection), fusion.onnx, tokenizer.json (MiniLM's, padding off: the server pads per batch),
model_card.md + PNGs, manifest.json.
Golden examples are real test items (raw media, base64) whose outputs torch computes from the raw bytes
through service.preprocess; the bundle is then loaded by the server's own loader (`python -m service check`,
a subprocess: training never imports the server) and the golden examples replayed, and export fails if any
output differs by more than the tolerance.
"""

from __future__ import annotations

import base64
import shutil
from datetime import datetime
from pathlib import Path

import torch

from service import manifest as mf
from service.manifest import VIDEO_SLOTS
from training.bundle_check import server_golden_error, verify_bundle_files, write_bundle_manifest
from training.data.features import collate, content, decode
from training.data.specs import PreprocessSpecs, preprocess_for, served_preprocess
from training.data.video_decode import video_preprocess
from training.encoders import backbone_options
from training.errors import UserError
from training.evaluate_search import joint_space_block, label_embeddings
from training.export_encoders import ParityError, export_encoder
from training.export_fusion import export_fusion
from training.export_video import clip_arrays, export_pool, video_reference
from training.model.backbones import EncoderWithProjection, build_encoder
from training.model.fused import FusedModel, ServingGraph
from training.model_card import manifest_metrics, render_model_card
from training.publishing import publishing

TOLERANCE = 1e-4
# all three, then each encoder alone, then pairs: the first four already exercise every encoder and the masking;
# a video model adds a clip alone and a clip with the others beside it (every slot in one row)
GOLDEN_SUBSETS = (
    ("image", "text", "audio"), ("image",), ("text",), ("audio",),
    ("image", "audio"), ("text", "audio"), ("image", "text"),
)  # fmt: skip
VIDEO_GOLDEN = (
    ("image", "text", "audio", "video"),
    ("video",),
    ("text", "video"),
    ("image", "video"),
    ("audio", "video"),
)
VIDEO_GOLDEN_COUNT = 2  # clips beside golden_count's other examples (each replays every segment: slower)
CARD_FILES = ("model_card.md", "training_curves.png", "confusion_matrix.png")
ENCODER_SPECS = {"image": mf.ImageEncoder, "text": mf.TextEncoder, "audio": mf.AudioEncoder}


def trained_encoder(model: FusedModel, modality: str) -> EncoderWithProjection:
    """Packaged backbone (with its fine-tuned blocks, if any) + the projection head the fused model learned."""
    encoder = build_encoder(modality, model.dim, tuned=model.backbone_state.get(modality), **backbone_options(model))
    encoder.proj.load_state_dict(model.projections[modality].state_dict())
    return encoder.eval()


def model_label_embeddings(model: FusedModel, labels: list[str]):
    """The labels through the model's trained text encoder (export's own construction); None without one."""
    if "text" not in model.encoders:
        return None
    return label_embeddings(trained_encoder(model, "text"), labels, served_preprocess(preprocess_for(model)))


class NormalisingImageEncoder(torch.nn.Module):
    """uint8 pixels [B,3,S,S] → (pixels - mean) / std → the trained image encoder → [B,D]: what a bundle with
    `normalise: "graph"` runs, equal to the server normalising the same pixels within 1e-6."""

    def __init__(self, encoder: EncoderWithProjection, spec: mf.ImagePreprocess):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32)[:, None, None])  # [3,1,1]
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32)[:, None, None])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder((pixel_values.to(torch.float32) - self.mean) / self.std)


def _encoder_inputs(examples: list, modality: str, specs: PreprocessSpecs, clips=None):
    """Export example (2 real items) + check sets (1 item; 3 items of other lengths, padded); `clips`: the
    frames or sounds of clips (export_video.clip_arrays) for an encoder the dataset feeds only through videos."""
    having = [e for e in examples if getattr(e, modality) is not None][:6]
    arrays = [decode(content(e, modality), modality, specs) for e in having]
    arrays = arrays if len(arrays) >= 2 or clips is None else clips(modality)
    if len(arrays) < 2:
        raise UserError(f"need at least 2 examples with {modality} to export its encoder (the dataset has fewer)")
    checks = [collate(modality, arrays[2:3] or arrays[:1])] + ([collate(modality, arrays[3:6])] if arrays[3:] else [])
    return collate(modality, arrays[:2]), checks


def export_encoders(
    model: FusedModel, examples: list, bundle: Path, specs: PreprocessSpecs, progress: bool, video=None
):
    """→ ({modality: manifest encoder spec}, {modality: max |diff|}, {modality: torch encoder})."""
    from tqdm import tqdm

    specs_out, diffs, encoders = {}, {}, {}
    clips = (lambda m: clip_arrays(examples, m, model, specs, video)) if video is not None else None
    for modality in tqdm(model.encoders, desc="export encoders", unit="encoder", disable=not progress):
        encoder = trained_encoder(model, modality)
        if modality == "image" and specs.image.normalise == "graph":
            encoder = NormalisingImageEncoder(encoder, specs.image)
        example, checks = _encoder_inputs(examples, modality, specs, clips)
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
    """(example, subset) pairs: different subsets, distinct real test items having those modalities.
    `modalities`: the model's slots; a video model's first VIDEO_GOLDEN_COUNT golden examples hold a clip."""
    chosen, used = [], set()
    video = [tuple(m for m in s if m in modalities or m == "video") for s in VIDEO_GOLDEN]
    video = video if set(VIDEO_SLOTS) & set(modalities) else []
    plain = [tuple(m for m in s if m in modalities) for s in GOLDEN_SUBSETS]
    for subsets, most in ((video, VIDEO_GOLDEN_COUNT), (plain, count)):
        picked = 0
        for subset in dict.fromkeys(s for s in subsets if s):
            item = next((e for e in examples if e.id not in used and all(getattr(e, m) for m in subset)), None)
            if item is not None and picked < most:
                chosen.append((item, subset))
                used.add(item.id)
                picked += 1
    return chosen


@torch.no_grad()
def torch_reference(model: FusedModel, encoders: dict, example, subset, specs: PreprocessSpecs, video=None):
    """Golden example: raw inputs of `subset` and what torch computes from the raw bytes, item alone."""
    embeddings, raw = {}, {}
    for m in (m for m in subset if m != "video"):
        raw[m] = content(example, m)
        inputs = collate(m, [decode(raw[m], m, specs)])  # service.preprocess, as the server does
        embeddings[m] = encoders[m](*inputs)  # [1,D]
    zeros = torch.zeros(1, model.dim)  # what the server sends for an absent modality
    present = torch.tensor([[float(m in subset) for m in model.modalities]])  # [1,M]
    logits, fused, heads = ServingGraph(model)(*(embeddings.get(m, zeros) for m in model.modalities), present)
    b64 = {m: base64.b64encode(raw[m]).decode("ascii") for m in ("image", "audio") if m in raw}
    text = example.text if "text" in subset else None
    if "video" in subset:
        outputs, clip = video_reference(model, encoders, example, embeddings, specs, video)
        inputs = mf.GoldenInput(image_b64=b64.get("image"), audio_b64=b64.get("audio"), text=text, video_b64=clip)
        return mf.GoldenExample(inputs=inputs, outputs=outputs)
    inputs = mf.GoldenInput(image_b64=b64.get("image"), audio_b64=b64.get("audio"), text=text)
    outputs = mf.GoldenOutput(
        probabilities=torch.softmax(logits[0].double(), -1).tolist(),
        fused=fused[0].tolist(),
        embeddings={m: e[0].tolist() for m, e in embeddings.items()},
        modality_probabilities={
            m: torch.softmax(heads[0, i].double(), -1).tolist() for i, m in enumerate(model.modalities) if m in subset
        },
    )
    return mf.GoldenExample(inputs=inputs, outputs=outputs)


def publish_bundle(model: FusedModel, data, cfg, report: dict, version: str, overwrite: bool) -> tuple[Path, dict]:
    """Export into a staging directory, verify there, publish as <models_dir>/<name>/<version> (publishing.py)."""
    with publishing(cfg.model_dir(), version, overwrite) as staged:
        parity = export_bundle(model, data, cfg, report, cfg.run_dir(), staged)
    return cfg.model_dir() / version, parity


def export_bundle(model: FusedModel, data, cfg, report: dict, run_dir: Path, bundle: Path) -> dict:
    """Write and verify the bundle in one straight line; returns the parity record (also in manifest metrics).

    graphs + tokenizer → golden examples (torch) → a manifest of the graphs → the server's golden replay (once)
    → model card with the measured parity → the final manifest (every file) → verify its hashes.
    """
    specs, bundle = served_preprocess(preprocess_for(model)), Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    test = data.examples["test"]
    others = [e for split in ("val", "train") for e in data.examples.get(split, [])]  # if test lacks a modality
    video = video_preprocess(cfg) if set(VIDEO_SLOTS) & set(model.modalities) else None
    encoders, diffs, torch_encoders = export_encoders(model, test + others, bundle, specs, cfg.progress, video)
    if video is not None:
        encoders["video"], diffs["video"] = export_pool(model, bundle / "video_pool.onnx", video)
    # 1e-4 as the encoders and the golden replay: logits of 5 slots divided by a fitted temperature reached 1.3e-5
    fusion_spec, diffs["fusion"] = export_fusion(model, bundle / "fusion.onnx", TOLERANCE)
    if "text" in encoders:
        write_tokenizer(specs, bundle / specs.text.tokenizer_file)
    # the labels through the very encoder the graph was verified against: what the server's text slot computes
    labels = label_embeddings(torch_encoders["text"], data.labels, specs) if "text" in torch_encoders else None
    joint_space = joint_space_block(model, data, cfg.matryoshka_dims, labels)
    chosen = pick_golden(test, model.modalities, cfg.golden_count)
    golden = [torch_reference(model, torch_encoders, e, s, specs, video) for e, s in chosen]
    base = dict(
        name=bundle.parent.name, version=bundle.name, labels=data.labels, embedding_dim=model.dim,
        created=datetime.now().astimezone().isoformat(timespec="seconds"), encoders=mf.Encoders(**encoders),
        fusion=fusion_spec, golden=golden, golden_tolerance=TOLERANCE, joint_space=joint_space,
        description=f"{cfg.name}: {fusion_spec.strategy} fusion of {', '.join(model.modalities)}",
    )  # fmt: skip
    write_bundle_manifest(bundle, base, {})  # the graphs only: what the server needs to replay the golden examples
    error = server_golden_error(bundle, cfg.threads)
    if not error <= TOLERANCE:
        raise ParityError(f"{bundle}: server golden replay differs from torch by {error:.3g} > {TOLERANCE:g}")
    report["parity"] = {"export_max_abs_diff": diffs, "golden_subsets": [e.inputs.modalities() for e in golden],
                        "server_golden_max_abs_diff": error}  # fmt: skip
    (bundle / "model_card.md").write_text(render_model_card(report, cfg, data), encoding="utf-8")
    for name in CARD_FILES[1:]:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, bundle / name)
    write_bundle_manifest(bundle, base, manifest_metrics(report))
    verify_bundle_files(bundle)
    return report["parity"]
