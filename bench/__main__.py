"""`python -m bench` (= `make bench`): in-process ceiling vs HTTP server, batching on vs off, latency vs load.

Phases, in order, all on 127.0.0.1: per-item stage costs and the in-process ceiling (closed loop) →
server with batching on (closed loop, then the open-loop sweep) → server with batching off (closed
loop). Writes results.json, results.md and latency_vs_load.png to --out. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import report
from bench.ceiling import run_ceiling
from bench.loadgen import say
from bench.runner import QUICK, Plan, run_server, server_overrides
from bench.summary import combine, notes
from bench.workloads import WORKLOADS, build_workloads, resolve_bundle
from service.settings import load_settings

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute in all)")
    parser.add_argument("--duration", type=float, help="measured seconds per closed-loop phase")
    parser.add_argument("--open-duration", type=float, help="seconds of arrivals per open-loop rate")
    parser.add_argument("--concurrency", type=int, help="closed-loop clients")
    parser.add_argument("--rates", help="open-loop rates as fractions of capacity, e.g. 0.25,0.5,0.9")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--client", choices=("raw", "httpx"), help="load generator HTTP client (default raw)")
    parser.add_argument("--model-dir", type=Path, help="serve a bundle from here instead of building one")
    parser.add_argument("--model", help="model name under --model-dir (default: the only one)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server setting for every phase, e.g. --set intra_op_threads=1 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default bench/results)")
    return parser.parse_args(argv)


def parse_setting(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"bench: --set takes KEY=VALUE, got {item!r}")
    try:
        return key.strip().lower(), json.loads(value)  # numbers, lists and dicts as JSON
    except json.JSONDecodeError:
        return key.strip().lower(), value


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes = {
        "duration_s": args.duration,
        "open_duration_s": args.open_duration,
        "concurrency": args.concurrency,
        "client": args.client,
        "rates": tuple(float(r) for r in args.rates.split(",")) if args.rates else None,
        "settings": tuple(parse_setting(item) for item in args.set) or None,
    }
    plan = replace(plan, **{k: v for k, v in changes.items() if v is not None})
    if plan.duration_s <= 0 or plan.open_duration_s <= 0 or plan.concurrency < 1 or not plan.rates:
        raise SystemExit("bench: durations must be > 0, concurrency >= 1, and at least one rate given")
    return plan


async def run_all(bundle, workloads, plan: Plan, scratch: Path) -> tuple[dict, dict, dict]:
    say("in-process ceiling …")
    ceiling = await run_ceiling(bundle, load_settings(**server_overrides(bundle, plan, batching=True)), workloads, plan)
    say("HTTP server, batching on …")
    on = await run_server(bundle, workloads, plan, batching=True, sweep=True, log_dir=scratch)
    say("HTTP server, batching off …")
    off = await run_server(bundle, workloads, plan, batching=False, sweep=False, log_dir=scratch)
    return ceiling, on, off


def select_workloads(bundle, plan: Plan, names: str | None) -> tuple[list, list[str]]:
    workloads, skipped = build_workloads(bundle, plan.pool)
    if names:
        unknown = set(names.split(",")) - set(WORKLOADS)
        if unknown:
            raise SystemExit(f"bench: unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
        workloads = [w for w in workloads if w.name in names.split(",")]
    if not workloads:
        raise SystemExit("bench: no workload left to run")
    return workloads, skipped


def main(argv: list[str] | None = None) -> None:
    args, started = parse_args(argv), time.perf_counter()
    plan = make_plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": shlex.join(sys.orig_argv), "machine": report.machine_info()}
    results["load_average_before"] = report.load_average()
    with tempfile.TemporaryDirectory(prefix="fusionserve-bench-") as scratch:
        say("preparing the bundle and the inputs …")
        bundle = resolve_bundle(args.model_dir, args.model, Path(scratch))
        settings = load_settings(**server_overrides(bundle, plan, batching=True))  # fail early on a bad --set
        workloads, skipped = select_workloads(bundle, plan, args.workloads)
        say(f"bundle {bundle.name}/{bundle.version} ({'built' if bundle.built else bundle.model_dir}); {plan}")
        ceiling, on, off = asyncio.run(run_all(bundle, workloads, plan, Path(scratch)))
    results |= {
        "bundle": bundle.describe(),
        "settings": settings.model_dump(mode="json", exclude={"api_key"}),
        "plan": plan.as_dict(),
        "inputs": {w.name: w.describe() for w in workloads},
        "servers": {"batching_on": on["process"], "batching_off": off["process"]},
        "workloads": combine(ceiling, on, off),
        "load_average_after": report.load_average(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    results["notes"] = notes(results, skipped)
    paths = [write(results, args.out) for write in (report.write_json, report.write_markdown, report.plot)]
    print("\n".join(report.summary_rows(results)))
    say("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
