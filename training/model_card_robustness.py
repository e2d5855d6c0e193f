"""Model card sections for the robustness set and calibration (training/robustness.py's report)."""

from __future__ import annotations


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def calibration_section(calibration: dict | None) -> list[str]:
    if not calibration:
        return []
    temps = ", ".join(f"{k} {v:.2f}" for k, v in calibration["temperatures"].items())
    return ["## Calibration", "",
            "Temperature scaling fitted on the validation split (NLL), one temperature for the fused answer and "
            f"one per modality head, inside fusion.onnx: {temps}. Expected calibration error of the fused answer "
            f"on the test split (15 bins): **{_pct(calibration['ece_before'])} % before, "
            f"{_pct(calibration['ece_after'])} % after**.", ""]  # fmt: skip


def robustness_section(report: dict | None) -> list[str]:
    if not report:
        return []
    lines = ["## Clean inputs (robustness set)", "",
             "Clean single-modality items that share nothing with training but the source: the test split's own "
             "handwritten digits rendered in every polarity × upscaling filter × size; every digit word spoken "
             "with no noise by two seen and two held-out voice variants per accent (two accents held out of "
             "training); exact text hints per language. Accuracy %:", "",
             "| modality | rendering / group | items | accuracy % |", "|---|---|---|---|"]  # fmt: skip
    for modality, groups in report["accuracy"].items():
        lines += [f"| {modality} | {g} | {r['n']} | {_pct(r['accuracy'])} |" for g, r in groups.items()]
    recall = report["label_recall@1"]
    lines += ["", "Same-label cross-modal recall@1 on these clean items (the nearest item of the other modality "
              "has the query's label):", "", "| query → gallery | recall@1 % |", "|---|---|"]  # fmt: skip
    lines += [f"| {pair.replace('->', ' → ')} | {_pct(value)} |" for pair, value in recall.items()]
    check = report.get("spoken_word_check")
    if check:
        lines += ["", f"Spoken word vs clean image: for {len(check['voices'])} held-out voices "
                  f"({', '.join(check['voices'])}), the nearest of the voice's ten spoken digit words to a clean image "
                  f"(dark-on-light, bicubic, 64 px) is that image's digit for {_pct(check['all_images'])} % of "
                  f"{check['images']} image × voice pairs, and for {check['first_image_per_digit']} of the digits' "
                  "first test images."]  # fmt: skip
    return lines + [""]
