"""The joint space as a search index (docs/training.md "Search figures"): what the manifest's `joint_space`
block holds (service/joint_space.py) — the int8 / uint8 ranges per supported dim, calibrated on the training
split, and the zero-shot temperature, fitted on the validation split — and the test-split figures the model card
reports: recall@1 per modality pair per dim, per encoding, and zero-shot accuracy per subset next to the
classifier's.

The maths is the server's (service/embedding_types.py, service/zero_shot.py): a figure here is what a client
of the bundle gets. A label's embedding is what the server computes for a text-only item holding the label
(the trained text encoder: the graph export verifies against text_encoder.onnx within 1e-4).
"""

from __future__ import annotations

import numpy as np
import torch

from service.embedding_types import dequantize, hamming_similarity, quantize, to_base64, truncate
from service.joint_space import UNCALIBRATED_TEMPERATURE, JointSpace, QuantizationRanges, ZeroShotCalibration
from service.zero_shot import DEFAULT_TEMPLATE, expected_calibration_error, label_text, probabilities
from training.calibration import fit_temperature
from training.data.features import collate, decode
from training.data.splits import Split, TrainData, restrict
from training.metrics import label_recall1_ties, recall1_ties, subset_name, subsets
from training.model.fused import FusedModel
from training.train import predict

REPORTED_DIMS = (64, 128)  # besides the trained prefixes and the full dim, for bundles trained without them
ENCODINGS = ("float", "int8", "binary")
ZERO_SHOT_BOUNDS = (1e-3, 0.5)  # cosines lie in [-1, 1]: T above 0.5 is all but uniform


def reported_dims(model_dim: int, trained: list[int]) -> list[int]:
    return sorted({d for d in (*REPORTED_DIMS, *trained) if d < model_dim} | {model_dim})


@torch.no_grad()
def text_embeddings(encoder: torch.nn.Module, texts: list[str], specs) -> np.ndarray:
    """Each text alone through the text encoder, as the server embeds a text-only item → [L,D] float32."""
    rows = [encoder(*collate("text", [decode(t.encode("utf-8"), "text", specs)])) for t in texts]
    return torch.cat(rows).numpy().astype(np.float32)


def label_embeddings(encoder, labels: list[str], specs, template: str = DEFAULT_TEMPLATE) -> np.ndarray:
    return text_embeddings(encoder, [label_text(template, label) for label in labels], specs)


def split_points(model: FusedModel, split: Split) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fused [N,D] and {slot: [N_m,D]} embeddings of the items having the slot (eval mode, the split's mask)."""
    _, fused, embeddings = predict(model, split)
    slots = {m: embeddings[m][split.present[:, i] > 0.5].numpy() for i, m in enumerate(model.modalities)}
    return fused.numpy(), slots


def calibration_ranges(model: FusedModel, split: Split, dims: list[int]) -> dict[str, QuantizationRanges]:
    """Per dim, the per-dimension min / max of the re-normalised prefixes of every present slot and the fused
    embedding of `split` (the training split), as sentence-transformers' quantize_embeddings calibrates."""
    fused, slots = split_points(model, split)
    points = np.concatenate([fused, *slots.values()])  # [P,D]
    out = {}
    for dim in dims:
        cut = truncate(points, dim)
        out[str(dim)] = QuantizationRanges(min=cut.min(axis=0).tolist(), max=cut.max(axis=0).tolist())
    return out


def fit_zero_shot(fused: np.ndarray, truth: np.ndarray, labels: np.ndarray, split: str = "val"):
    """The temperature of softmax(cosine / T) fitted by NLL on (fused, truth), with its accuracy and ECE; None
    without items."""
    if not len(truth):
        return None
    cosines = torch.from_numpy(fused.astype(np.float32) @ labels.T)
    temperature = fit_temperature(cosines, torch.from_numpy(truth).long(), bounds=ZERO_SHOT_BOUNDS)
    return ZeroShotCalibration(
        temperature=temperature, template=DEFAULT_TEMPLATE, split=split, n=len(truth),
        accuracy=float(np.mean(cosines.numpy().argmax(1) == truth)),
        ece=expected_calibration_error(probabilities(fused, labels, temperature), truth),
        ece_uncalibrated=expected_calibration_error(probabilities(fused, labels, UNCALIBRATED_TEMPERATURE), truth),
    )  # fmt: skip


def joint_space_block(model: FusedModel, data: TrainData, trained: list[int], label_vectors) -> JointSpace:
    """The manifest's joint_space: the trained prefixes, ranges for each supported dim, the zero-shot fit on the
    validation split (null without label embeddings: a bundle without a text encoder)."""
    ranges = calibration_ranges(model, data.splits["train"], [*trained, model.dim])
    zero_shot = None
    if label_vectors is not None:
        val = data.splits["val"]
        zero_shot = fit_zero_shot(split_points(model, val)[0], val.labels.numpy(), label_vectors)
    return JointSpace(matryoshka_dims=list(trained), quantization=ranges, zero_shot=zero_shot)


def similarity(queries: np.ndarray, gallery: np.ndarray, kind: str, ranges: QuantizationRanges | None):
    """[N,d] × [M,d] → [N,M] scores as a client of `kind` computes them: float and int8 a dot product (int8 of
    the dequantized levels), binary the number of equal bits of the ubinary codes."""
    if kind == "float":
        return queries @ gallery.T
    if kind == "binary":
        return hamming_similarity(quantize(queries, "ubinary"), quantize(gallery, "ubinary"))
    back = [dequantize(quantize(x, kind, ranges), kind, ranges) for x in (queries, gallery)]
    return back[0] @ back[1].T


def wire_bytes(dim: int, kind: str) -> dict[str, int]:
    """Bytes of one item's vector of `dim` in `kind` on the wire: raw, and as base64 text."""
    unit = QuantizationRanges(min=[-1.0] * dim, max=[1.0] * dim)  # any ranges: the size is the type's
    row = quantize(np.zeros((1, dim), np.float32), kind, unit)[0]
    return {"bytes": int(row.nbytes), "base64_chars": len(to_base64(row, kind))}


def pair_scores(model: FusedModel, split: Split, embeddings: dict[str, np.ndarray], dim: int, kind: str, ranges):
    """{"a->b": {n, recall@1, label_recall@1}} over ordered slot pairs among the items having both (ties at
    random, in expectation), the vectors cut to `dim` and encoded as `kind`."""
    out, labels = {}, split.labels.numpy()
    for i, a in enumerate(model.modalities):
        for j, b in enumerate(model.modalities):
            both = ((split.present[:, i] > 0.5) & (split.present[:, j] > 0.5)).numpy()
            if a == b or both.sum() < 2:
                continue
            sim = similarity(truncate(embeddings[a][both], dim), truncate(embeddings[b][both], dim), kind, ranges)
            out[f"{a}->{b}"] = {"n": int(both.sum()), "recall@1": recall1_ties(sim),
                                "label_recall@1": label_recall1_ties(sim, labels[both])}  # fmt: skip
    return out


def _summary(pairs: dict[str, dict]) -> dict:
    """The means over the pairs of recall@1 and label_recall@1, with the pairs themselves."""
    means = {key: float(np.mean([p[key] for p in pairs.values()])) if pairs else None
             for key in ("recall@1", "label_recall@1")}  # fmt: skip
    return means | {"pairs": pairs}


def retrieval_by_dim(model, split, embeddings, dims: list[int]) -> dict[str, dict]:
    """{str(dim): {"pairs": pair_scores (float), "recall@1", "label_recall@1" (means over pairs)}}."""
    return {str(dim): _summary(pair_scores(model, split, embeddings, dim, "float", None)) for dim in dims}


def retrieval_by_encoding(model, split, embeddings, ranges: dict[str, QuantizationRanges], dims) -> dict:
    """{str(dim): {kind: {"recall@1", "label_recall@1" (means over pairs), "pairs", "bytes", "base64_chars"}}}."""
    out = {}
    for dim in dims:
        out[str(dim)] = {}
        for kind in ENCODINGS:
            pairs = pair_scores(model, split, embeddings, dim, kind, ranges.get(str(dim)))
            out[str(dim)][kind] = _summary(pairs) | wire_bytes(dim, kind)
    return out


def zero_shot_by_subset(model, split: Split, label_vectors: np.ndarray, temperature: float, classifier: dict):
    """{subset: {n, accuracy (zero-shot, fused vs label names), ece (at `temperature`), classifier_accuracy}}."""
    out = {}
    for subset in subsets(model.modalities):
        part, present = restrict(split, subset, model.modalities)
        if not len(part):
            continue
        _, fused, _ = predict(model, part, present)
        truth = part.labels.numpy()
        probs = probabilities(fused.numpy(), label_vectors, temperature)
        name = subset_name(subset)
        out[name] = {"n": len(part), "accuracy": float(np.mean(probs.argmax(1) == truth)),
                     "ece": expected_calibration_error(probs, truth),
                     "classifier_accuracy": classifier.get(name, {}).get("accuracy")}  # fmt: skip
    return out


def search_metrics(model: FusedModel, data: TrainData, trained: list[int], classifier: dict, vectors, split="test"):
    """The card's search figures on `split` (docs/training.md "Search figures"). classifier: evaluate's subsets;
    vectors: the label names' embeddings [L,D] (export.model_label_embeddings), None for no zero-shot figures."""
    part, dims = data.splits[split], reported_dims(model.dim, trained)
    space = joint_space_block(model, data, trained, vectors)
    ranges = calibration_ranges(model, data.splits["train"], dims)
    embeddings = {m: e.numpy() for m, e in predict(model, part)[2].items()}  # every row: pair_scores masks them
    encoded_dims = sorted({dims[0], model.dim})  # the shortest reported prefix (64) and the full dim
    fit = space.zero_shot.model_dump() if space.zero_shot is not None else None
    out = {"split": split, "matryoshka_dims": list(trained), "zero_shot_fit": fit,
           "retrieval": retrieval_by_dim(model, part, embeddings, dims),
           "encodings": retrieval_by_encoding(model, part, embeddings, ranges, encoded_dims)}  # fmt: skip
    if space.zero_shot is not None:
        out["zero_shot"] = zero_shot_by_subset(model, part, vectors, space.zero_shot.temperature, classifier)
    return out
