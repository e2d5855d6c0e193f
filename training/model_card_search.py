"""Model card sections for the joint space as a search index (training/evaluate_search.py's report): recall@1
per Matryoshka dim and per encoding, and zero-shot accuracy from the label names next to the classifier's."""

from __future__ import annotations


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _dims_table(retrieval: dict[str, dict]) -> list[str]:
    dims = list(retrieval)
    head = " | ".join(f"R@1 {d}" for d in dims) + " | " + " | ".join(f"label R@1 {d}" for d in dims)
    lines = [f"| query → gallery | items | {head} |", "|---|---|" + "---|" * (2 * len(dims))]
    for pair, first in retrieval[dims[0]]["pairs"].items():
        cells = [_pct(retrieval[d]["pairs"][pair][key]) for key in ("recall@1", "label_recall@1") for d in dims]
        lines.append(f"| {pair.replace('->', ' → ')} | {first['n']} | " + " | ".join(cells) + " |")
    means = [_pct(retrieval[d][key]) for key in ("recall@1", "label_recall@1") for d in dims]
    return lines + ["| *mean over pairs* | | " + " | ".join(means) + " |"]


def _encodings_table(encodings: dict[str, dict]) -> list[str]:
    lines = ["| dim | encoding | bytes / item | base64 chars | recall@1 % | label recall@1 % |", "|---" * 6 + "|"]
    for dim, kinds in encodings.items():
        for kind, r in kinds.items():
            lines.append(f"| {dim} | {kind} | {r['bytes']} | {r['base64_chars']} | {_pct(r['recall@1'])} | "
                         f"{_pct(r['label_recall@1'])} |")  # fmt: skip
    return lines


def _zero_shot_lines(fit: dict | None, by_subset: dict | None) -> list[str]:
    if not fit or not by_subset:
        return ["No zero-shot figures: the bundle has no text encoder to embed label names (`zero_shot: null`).", ""]
    lines = [f"**Zero-shot** (`POST /v1/models/{{model}}/zero-shot`): each item's fused embedding against the label "
             f"names through the text encoder (template `{fit['template']}`), softmax of cosine / T with "
             f"T = {fit['temperature']:.4f} fitted (NLL) on the {fit['split']} split's {fit['n']} items: accuracy "
             f"{_pct(fit['accuracy'])} %, ECE (15 bins) **{_pct(fit['ece_uncalibrated'])} % at the uncalibrated "
             f"T = 0.01, {_pct(fit['ece'])} % calibrated**. Test split per subset, next to the trained classifier "
             "(fusion.onnx's answer):", "",
             "| modalities given | items | zero-shot accuracy % | classifier accuracy % | zero-shot ECE % |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in by_subset.items():
        lines.append(f"| {name} | {r['n']} | {_pct(r['accuracy'])} | {_pct(r['classifier_accuracy'])} | "
                     f"{_pct(r['ece'])} |")  # fmt: skip
    return lines + [""]


def search_section(search: dict | None) -> list[str]:
    """The '## Search' section; [] for a report from before the search figures."""
    if not search:
        return []
    trained = search["matryoshka_dims"]
    dims = ", ".join(map(str, trained)) if trained else "none (full dim only)"
    lines = ["## Search: shorter vectors, compact encodings, zero-shot", "",
             f"Matryoshka prefixes trained for: **{dims}** (the contrastive term at each prefix, truncated and "
             "re-normalised, and at the full dim; docs/training.md). Cross-modal retrieval on the "
             f"{search['split']} split, vectors cut to each dim and re-normalised (recall@1 of the item itself, "
             "label recall@1 of any item of its label; ties at random, in expectation), %:", "",
             *_dims_table(search["retrieval"]), "",
             "Per encoding (the server's own `embedding_types`; int8 scaled by the manifest's per-dimension ranges "
             "calibrated on the training split and scored by the dot product of the dequantized levels, binary "
             "scored by the number of equal sign bits), means over the pairs above:", "",
             *_encodings_table(search["encodings"]), ""]  # fmt: skip
    return lines + _zero_shot_lines(search.get("zero_shot_fit"), search.get("zero_shot"))
