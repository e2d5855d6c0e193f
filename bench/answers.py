"""`python -m bench.answers [BUNDLE]`: the answer-quality targets of the default bundle, read back from the
figures `make default-bundle` measured and stored in its manifest (model card tables), checked one by one.

Writes answers.json and answers.md (with the command) next to the other tridigits results. Exit 1 when a
target fails, so it can gate a release.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from service.manifest import read_manifest

OUT = Path(__file__).resolve().parent / "results" / "tridigits"


def _targets(metrics: dict, int8: dict | None) -> list[tuple[str, float | None, str, bool]]:
    """(target, measured, threshold text, ok) rows."""
    subsets, rob = metrics["subsets"], metrics["robustness"]
    fvs, cal = metrics["fused_vs_single"], metrics["calibration"]
    images = rob["accuracy"]["image"]
    worst_image = min(r["accuracy"] for r in images.values())
    recall = rob["label_recall@1"]
    singles = [subsets[m]["accuracy"] for m in ("image", "text", "audio")]
    rows = [
        ("clean-image accuracy, worst of 18 renderings", worst_image, ">= 0.95", worst_image >= 0.95),
        ("image-only, corrupted test split", subsets["image"]["accuracy"], ">= 0.50",
         subsets["image"]["accuracy"] >= 0.50),
        ("same-label cross-modal recall@1 (clean), worst pair", min(recall.values()), ">= 0.90",
         min(recall.values()) >= 0.90),
        ("spoken word nearest its digit's clean image, 3 held-out voices",
         rob["spoken_word_check"]["all_images"], "first image per digit: "
         + rob["spoken_word_check"]["first_image_per_digit"],
         rob["spoken_word_check"]["first_image_per_digit"].split("/")[0]
         == rob["spoken_word_check"]["first_image_per_digit"].split("/")[1]),
        ("fused all three (corrupted test split)", subsets["image+text+audio"]["accuracy"], ">= 0.97",
         subsets["image+text+audio"]["accuracy"] >= 0.97),
        ("fused − best single on the all-three items", fvs["gain"], ">= 0.05", fvs["gain"] >= 0.05),
        ("best single modality alone, corrupted split", max(singles), "< 0.90", max(singles) < 0.90),
        ("ECE of the fused answer, test split, calibrated", cal["ece_after"], "<= 0.03", cal["ece_after"] <= 0.03),
        ("server golden replay vs torch", metrics["parity"]["server_golden_max_abs_diff"], "<= 1e-4",
         metrics["parity"]["server_golden_max_abs_diff"] <= 1e-4),
    ]  # fmt: skip
    if int8 is not None:
        drop = max(int8["fp32"][k]["accuracy"] - int8["int8"][k]["accuracy"] for k in subsets)
        rows.append(("int8 vs fp32, largest accuracy drop over subsets", drop, "<= 0.005", drop <= 0.005))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bundle = Path(argv[0] if argv else "models/tridigits/1")
    metrics = read_manifest(bundle / "manifest.json").metrics
    int8_dir = bundle.parent.parent / f"{bundle.parent.name}-int8" / bundle.name
    int8 = read_manifest(int8_dir / "manifest.json").metrics.get("int8_vs_fp32") if int8_dir.is_dir() else None
    rows = _targets(metrics, int8)
    command = " ".join(["python -m bench.answers", shlex.join(argv)]).strip()
    lines = [f"# Answer targets of `{bundle}`", "", f"Command: `{command}`", "",
             "| target | measured | threshold | ok |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {value:.4g} | {threshold} | {'yes' if ok else '**NO**'} |" for name, value, threshold, ok
              in rows]  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "answers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    record = {"command": command, "bundle": str(bundle),
              "targets": [{"target": n, "measured": v, "threshold": t, "ok": ok} for n, v, t, ok in rows]}  # fmt: skip
    (OUT / "answers.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
