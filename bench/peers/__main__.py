"""`python -m bench.peers` (= `make bench-peers`): fusionserve vs peers serving the same ONNX, same load.

Peers (each in its own venv under $BENCH_VENVS, made by bench/peers/setup.sh): a hand-written FastAPI
endpoint without batching, LitServe, PyTriton. Workloads text-only and image-only, JSON, one item per
request; the in-process ceiling is measured in every run. Writes results.json and results.md to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import report
from bench.loadgen import say
from bench.peers import summary
from bench.peers.compare import FUSIONSERVE, QUICK, PeerPlan, run_all
from bench.peers.launch import COMMON_PACKAGES, DEFAULT_VENVS, PEERS, installed_versions, venv_python
from bench.workloads import build_workloads, resolve_bundle

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results" / "peers"
WORKLOADS = ("text-only", "image-only")
SERVER_PACKAGES = ("fastapi", "uvicorn", "starlette", "pydantic")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run, 3 s windows (not for quoting)")
    parser.add_argument("--runs", type=int, help="alternating runs (default 5)")
    parser.add_argument("--duration", type=float, help="measured seconds at c=32 (default 10)")
    parser.add_argument("--c1-duration", type=float, help="measured seconds at c=1 (default 5)")
    parser.add_argument("--concurrency", type=int, help="closed-loop clients (default 32)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="where setup.sh put the peer venvs")
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> PeerPlan:
    plan = QUICK if args.quick else PeerPlan()
    changes = {"runs": args.runs, "duration_s": args.duration, "c1_duration_s": args.c1_duration}
    changes["concurrency"] = args.concurrency
    plan = replace(plan, **{k: v for k, v in changes.items() if v is not None})
    if plan.runs < 1 or plan.duration_s <= 0 or plan.c1_duration_s <= 0 or plan.concurrency < 1:
        raise SystemExit("bench.peers: runs and concurrency must be >= 1, durations > 0")
    return plan


def peer_versions(peers: list[str], venvs: Path) -> tuple[list[str], dict, dict]:
    """(usable peers, versions, why the others are skipped)."""
    usable, versions, skipped = [], {}, {}
    for peer in peers:
        python, venv = venv_python(venvs, peer), venvs / peer
        if not (venv / ".installed").exists():
            log = venv / "install.log"
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""
            skipped[peer] = f"not installed in {venv} (bench/peers/setup.sh {peer}){': ' + tail if tail else ''}"
            continue
        try:
            versions[peer] = installed_versions(python, PEERS[peer].packages + COMMON_PACKAGES)
        except (RuntimeError, OSError, ValueError) as error:
            skipped[peer] = f"its venv cannot import its packages: {error}"
            continue
        usable.append(peer)
    ours = {p: importlib.metadata.version(p) for p in COMMON_PACKAGES + SERVER_PACKAGES}
    return usable, {FUSIONSERVE: ours, **versions}, skipped


def parity_note(workload: str, peer: str, p: dict) -> str:
    errors = f"; errors {p['errors']}" if p["errors"] else ""
    return (
        f"{workload}, {peer}: top-1 label equal to fusionserve's on {p['same_top1']}/{p['items']} items, "
        f"max probability difference {p['max_score_diff']:.2g}{errors}."
    )


def notes(results: dict, skipped: dict) -> list[str]:
    out = [f"{peer} not measured: {why}" for peer, why in skipped.items()]
    for run in results["runs"]:
        out += [f"{name} failed in a run: {r['error'][:600]}" for name, r in run["servers"].items() if "error" in r]
    for workload, result in results["summary"].items():
        out += [parity_note(workload, peer, p) for peer, p in result["parity"].items() if p]
    out += [
        "Peers run the bundle's text_encoder.onnx / image_encoder.onnx and fusion.onnx with their own code "
        "(bench/peers/peer_common.py: the manifest's tokenizer and image recipe, Pillow + tokenizers), the same "
        "work as fusionserve's classify. fastapi and LitServe take fusionserve's JSON body; PyTriton takes the "
        "KServe v2 JSON body (a BYTES tensor: the text, or the base64 image), its own protocol.",
        "Peer ORT sessions keep onnxruntime's defaults except intra_op_num_threads (so their thread pools spin "
        "between calls, as ORT does by default; PEER_ORT_SPINNING=0 turns that off); fusionserve disables spinning.",
        "The load generator shares the machine's cores with the server under test (client cores column), and "
        "the ceiling has no client at all.",
    ]
    load = results["load_average_before"]
    if load and load[0] > 0.5 * results["machine"]["usable_cores"]:
        out.append(f"The machine was busy before the run (load average {load}): expect noisy numbers.")
    return out


def main(argv: list[str] | None = None) -> None:
    args, started = parse_args(argv), time.perf_counter()
    plan = make_plan(args)
    unknown = set(args.peers.split(",")) - set(PEERS) | set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"bench.peers: unknown peers or workloads {sorted(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    peers, versions, skipped = peer_versions(args.peers.split(","), args.venvs)
    results = {"command": shlex.join(sys.orig_argv), "smoke": args.quick, "machine": report.machine_info()}
    results |= {"load_average_before": report.load_average(), "plan": plan.as_dict(), "versions": versions}
    bundle = resolve_bundle(args.model_dir, args.model, Path(tempfile.gettempdir()))
    workloads = [w for w in build_workloads(bundle, plan.pool)[0] if w.name in args.workloads.split(",")]
    with tempfile.TemporaryDirectory(prefix="fusionserve-peers-") as scratch:
        say(f"peers {peers} (skipped: {list(skipped) or 'none'}); {plan}")
        results["runs"] = asyncio.run(run_all(peers, bundle, workloads, plan, args.venvs, Path(scratch)))
    names = [FUSIONSERVE, *peers, *skipped]
    results |= {"bundle": bundle.describe(), "inputs": {w.name: w.describe() for w in workloads}}
    results |= {"summary": summary.summarise(results["runs"], names, [w.name for w in workloads])}
    results |= {"skipped": skipped, "load_average_after": report.load_average()}
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["notes"] = notes(results, skipped)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    path = summary.markdown(results, args.out)
    say(f"wrote {args.out / 'results.json'}, {path}")


if __name__ == "__main__":
    main()
