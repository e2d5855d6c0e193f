"""`fusionserve`: serve, check and optimize bundles; classify, embed and zero-shot on a running server (the client).

`serve` runs the server with uvicorn and drains without loss on SIGTERM: readiness flips to 503 at once; for
drain_grace_s the server keeps accepting and answers new requests 503 + `Connection: close`; then it stops
accepting (serving what waits in the accept queue), lets in-flight requests finish (their queued items
included) within drain_timeout_s of the signal, and the lifespan drains the batchers (service/frontend/drain.py).

The server's modules are imported only by the server's verbs, so `classify` and `embed` run with only
`fusionserve[client]` (httpx) installed; the serving image, in turn, ships without the client.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CLIENT_VERBS = ("classify", "embed", "zero-shot")
# fp16 keeps ~3 significant digits: a stated bound for probabilities and unit-norm embeddings (docs/design-choices.md)
FP16_TOLERANCE = 1e-2


def serve(overrides: dict) -> None:
    """One process (FUSIONSERVE_WORKERS=0), or a supervisor of front-end and engine processes."""
    import os

    # numpy's OpenBLAS pool (the log-mel's matrix products) spins beside onnxruntime's and the other
    # processes' threads: one thread per process (docs/design-choices.md); set before numpy is imported
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from service.frontend.process import configure_logging, run_http
    from service.settings import load_settings
    from service.supervisor.processes import process_plan

    settings = load_settings(**overrides)
    configure_logging(settings)
    plan = process_plan(settings)
    if not plan.split:
        run_http(settings)
        return
    from service.supervisor.supervisor import Supervisor

    raise SystemExit(Supervisor(settings, overrides, plan).run())


def _add_server_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("serve", help="serve the bundles in FUSIONSERVE_MODEL_DIR")
    run.add_argument("--model-dir", help="overrides FUSIONSERVE_MODEL_DIR")
    run.add_argument("--host", help="overrides FUSIONSERVE_HOST")
    run.add_argument("--port", type=int, help="overrides FUSIONSERVE_PORT")
    check = commands.add_parser("check", help="load one bundle as the server would and replay its golden examples")
    check.add_argument("bundle", help="a bundle directory, models/<name>/<version>")
    check.add_argument("--json", action="store_true", help="print the report (and golden outputs) as JSON")
    optimize = commands.add_parser(
        "optimize", help="write a new bundle version with optimised encoder graphs; it must pass the golden replay"
    )
    optimize.add_argument("bundle", help="the source bundle directory, models/<name>/<version>")
    optimize.add_argument("--out-version", help="version to write (default: the next free integer)")
    optimize.add_argument(
        "--min-speedup", type=float, help="keep an optimised graph only if this much faster (default 1.0; --fp16: 0)"
    )
    optimize.add_argument(
        "--fp16", action="store_true", help="float16 encoders (for a GPU), kept only within --fp16-tolerance"
    )
    optimize.add_argument(
        "--fp16-tolerance", type=float, default=FP16_TOLERANCE,
        help=f"the golden tolerance the fp16 version must meet and will carry (default {FP16_TOLERANCE:g})",
    )  # fmt: skip
    optimize.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_batch_command(commands)


def _add_batch_command(commands: argparse._SubParsersAction) -> None:
    bulk = commands.add_parser("batch", help="classify or embed a corpus on Ray Data (needs fusionserve[batch])")
    bulk.add_argument("--model-dir", required=True, help="the models folder (<name>/<version>/ inside)")
    bulk.add_argument("--model", required=True, help="the bundle's name")
    bulk.add_argument("--version", help="default: the newest version that loads")
    bulk.add_argument("--input", required=True, help="JSONL, CSV or Parquet (local or a pyarrow URI: s3://, gs://)")
    bulk.add_argument("--output", required=True, help="PATH.parquet: one file; otherwise a folder (Ray's writers)")
    bulk.add_argument("--task", choices=("classify", "embed"), default="classify")
    bulk.add_argument(
        "--format",
        choices=("items", "openai"),
        default="items",
        help="openai: OpenAI-Batch JSONL of /v1/embeddings requests in, answers out (--output .jsonl)",
    )
    bulk.add_argument("--concurrency", type=int, default=1, help="actors, each with the bundle loaded")
    bulk.add_argument("--batch-size", type=int, default=64, help="rows per map_batches call")
    bulk.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 when the cluster has GPUs)")
    bulk.add_argument("--ray-address", help="a running cluster (ray://host:10001 or auto); default: a local Ray")


def _add_client_commands(commands: argparse._SubParsersAction) -> str | None:
    """The client's verbs, or (where the client or httpx is not installed) placeholders that say so: the
    reason is returned, and running one of them prints it."""
    try:
        from fusionserve_client.cli import add_commands
    except ModuleNotFoundError as error:
        if error.name not in ("fusionserve_client", "httpx"):
            raise
        for verb in CLIENT_VERBS:
            commands.add_parser(verb, help="(needs fusionserve[client])").add_argument("rest", nargs=argparse.REMAINDER)
        return f"{error.name} is not installed; pip install 'fusionserve[client]'"
    add_commands(commands)
    return None


def _run_server_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    try:
        from service.settings import SettingsError, load_settings  # pydantic-settings: the server's verbs only
    except ModuleNotFoundError as error:  # a client-only install (fusionserve[client])
        parser.exit(2, f"fusionserve {args.command}: {error.name} is not installed; pip install 'fusionserve[serve]'\n")
    try:
        if args.command == "batch":
            raise SystemExit(_run_batch(args, parser))
        if args.command == "check":
            from service.engine.check import run_check

            settings = load_settings(model_dir=Path(args.bundle).parent.parent)
            raise SystemExit(run_check(args.bundle, args.json, settings))
        if args.command == "optimize":
            from bundletools.optimize_cli import run_optimize  # onnx + graph passes: only for this command

            settings = load_settings(model_dir=Path(args.bundle).parent.parent)
            fp16 = args.fp16_tolerance if args.fp16 else None
            speedup = args.min_speedup if args.min_speedup is not None else (0.0 if args.fp16 else 1.0)
            raise SystemExit(run_optimize(args.bundle, args.out_version, speedup, args.json, settings, fp16))
        serve({k: v for k, v in vars(args).items() if k != "command" and v is not None})
    except SettingsError as error:
        parser.exit(2, f"fusionserve: {error}\n")


def _run_batch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json

    try:
        from service.bulk.job import BulkJob, run_job
    except ModuleNotFoundError as error:  # ray or pyarrow: the batch extra
        parser.exit(2, f"fusionserve batch: {error.name} is not installed; pip install 'fusionserve[batch]'\n")
    from service.bulk.sources import input_kind

    if args.format == "openai" and not args.output.endswith(".jsonl"):
        parser.exit(2, "fusionserve batch: --format openai writes JSONL: --output must end in .jsonl\n")
    try:
        if args.format == "items":
            input_kind(args.input)  # before Ray starts: a wrong suffix is a usage error
    except ValueError as error:
        parser.exit(2, f"fusionserve batch: {error}\n")
    options = {k: v for k, v in vars(args).items() if k != "command"}
    summary = run_job(BulkJob(**options))
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fusionserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_server_commands(commands)
    client_missing = _add_client_commands(commands)
    args = parser.parse_args(argv)
    if args.command in CLIENT_VERBS:
        if client_missing:
            parser.exit(2, f"fusionserve {args.command}: {client_missing}\n")
        from fusionserve_client.cli import run

        raise SystemExit(run(args))
    _run_server_command(args, parser)


if __name__ == "__main__":
    main()
