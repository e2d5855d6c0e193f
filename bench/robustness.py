"""`python -m bench.robustness` (= `make bench-robustness`): fusionserve against an attacker and an unlucky operator.

Against a real `fusionserve serve` in one process (FUSIONSERVE_WORKERS=0) on 127.0.0.1, with the bundle's
newest version (default models/tridigits/1), explicit model control and an admin key:
1. --cycles unload / load cycles through the repository API (default 10; --quick 3): the serving process's
   VmRSS after the start-up load, after each unload and after each load;
2. 48 connections trickling a 100-byte JSON body at a byte a second to /v1/models/<m>/embed with a 5 s
   deadline: when the server cut each (and how); ordinary JSON embeds meanwhile; an unload once all 48 are
   sending (bounded at 30 s); then a load again;
3. a KServe V2 infer body whose text BYTES data nests 700 lists: its status.
Then a second server, explicit model control on loopback with no admin key:
4. a POST unload carrying `Origin: http://evil.example`: its status, and whether embed still answers 200.
Writes results.json and results.md to --out (default bench/results/robustness).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import report
from bench.loadgen import say
from bench.robustness_attacks import (
    ADMIN_KEY,
    EVIL_ORIGIN,
    deep_nesting,
    foreign_origin_unload,
    reload_cycles,
    slow_bodies,
)
from bench.server import ServerProcess
from bench.workloads import resolve_bundle

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "robustness"
SMOKE = "**SMOKE RUN: fewer cycles, on a shared, busy machine. Not for quoting.**"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 reload cycles (not for quoting)")
    parser.add_argument("--cycles", type=int, help="unload / load cycles (default 10; --quick 3)")
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.cycles = args.cycles if args.cycles is not None else (3 if args.quick else 10)
    if args.cycles < 1:
        raise SystemExit("bench.robustness: need --cycles >= 1")
    return args


def overrides(bundle, admin_key: str) -> dict:
    """One process, explicit model control; no API key ("" = none, whatever the environment says)."""
    return {"model_dir": str(bundle.model_dir), "models": [bundle.name], "log_level": "warning", "workers": 0,
            "model_control": "explicit", "admin_key": admin_key, "api_key": ""}  # fmt: skip


async def with_admin_key(bundle, cycles: int, log_dir: Path) -> dict:
    with ServerProcess(overrides(bundle, ADMIN_KEY), log_dir / "server-admin-key.log") as server:
        say(f"server (admin key) ready in {server.ready_s:.1f}s on {server.url}, pid {server.process.pid}")
        results = {"ready_s": round(server.ready_s, 2), "processes": len(server.pids())}
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0, trust_env=False) as client:
            say(f"{cycles} unload / load cycles")
            results["reload_cycles"] = await reload_cycles(server, client, bundle.name, cycles)
            say("48 trickled bodies")
            results["slow_bodies"] = await slow_bodies(server, client, bundle.name)
            results["deep_nesting"] = await deep_nesting(client, bundle.name)
        results["memory_at_end"] = server.memory_mb()
    return results


async def without_admin_key(bundle, log_dir: Path) -> dict:
    with ServerProcess(overrides(bundle, ""), log_dir / "server-keyless.log") as server:
        say(f"server (explicit, no admin key) ready in {server.ready_s:.1f}s on {server.url}")
        return await foreign_origin_unload(server, bundle.name)


def cycle_rows(cycles: dict) -> list[str]:
    rows = ["| cycle | unload | unload s | RSS unloaded MB | load | load s | embed after | RSS loaded MB |",
            "|---:|---|---:|---:|---|---:|---|---:|",
            f"| start-up | | | | | | | {cycles['rss_after_startup_mb']} |"]  # fmt: skip
    for r in cycles["rows"]:
        rows.append(f"| {r['cycle']} | {r['unload']} | {r['unload_s']} | {r['rss_unloaded_mb']} | {r['load']} | "
                    f"{r['load_s']} | {r['embed']} | {r['rss_mb']} |")  # fmt: skip
    return rows


def slow_body_rows(slow: dict) -> list[str]:
    cut, unload = slow["cut_after_s"], slow["unload"]
    return [
        "| measurement | value |",
        "|---|---|",
        f"| tricklers sending, first body byte written (of {slow['tricklers']}) | {slow['sending']} after "
        f"{slow['all_sending_s']} s |",
        f"| cut after (s from headers; deadline {slow['deadline_ms'] / 1000:g} s) min / median / max | "
        f"{cut['min']} / {cut['median']} / {cut['max']} |",
        f"| how they were cut | {slow['outcomes']}; unfinished {slow['unfinished']} |",
        f"| ordinary embeds meanwhile ({slow['ordinary']['clients']} clients, {slow['ordinary']['window_s']:g} s) | "
        f"{slow['ordinary']['statuses']}, slowest {slow['ordinary']['max_s']} s |",
        f"| unload with the admin key (bound {unload['bound_s']:g} s) | {unload['status']} in {unload['seconds']} s, "
        f"{unload['tricklers_open_when_it_returned']} tricklers still open |",
        f"| load again, then embed | {slow['load_again']['load']} in {slow['load_again']['load_s']} s, "
        f"{slow['load_again']['embed']} |",
    ]


def markdown(results: dict, out: Path) -> Path:
    admin, cycles, origin = results["with_admin_key"], results["with_admin_key"]["reload_cycles"], results["keyless"]
    nesting = admin["deep_nesting"]
    lines = [
        "# fusionserve robustness: reloads, slow bodies, a browser page, deep nesting", "",
        *([SMOKE, ""] if results["smoke"] else []), *report.run_lines(results),
        f"Bundle: `{results['bundle']['path']}`. Server: `fusionserve serve`, FUSIONSERVE_WORKERS=0 (one process, "
        f"{admin['processes']} in its tree), 127.0.0.1, explicit model control, ready {admin['ready_s']} s after "
        "spawn; RSS = VmRSS of the serving process.", "",
        f"## {cycles['cycles']} unload / load cycles (repository API, admin key as Bearer)", "",
        *cycle_rows(cycles), "",
        f"RSS growth over the cycles: {cycles['growth_mb']} MB ({cycles['growth_per_cycle_mb']} MB a cycle); "
        f"one load's worth (median of loaded − unloaded): {cycles['one_load_mb_median']} MB.", "",
        "## 48 bodies trickled at 1 byte/s (`POST /v1/models/<m>/embed`, X-Request-Timeout-Ms: 5000)", "",
        *slow_body_rows(admin["slow_bodies"]), "",
        "## A web page's unload (explicit model control, loopback, no admin key)", "",
        "| request | status |", "|---|---|",
        f"| `POST /v2/repository/models/<m>/unload`, `Origin: {EVIL_ORIGIN}` | {origin['unload_status']} |",
        f"| embed after it | {origin['embed_after_status']} |", "",
        f"Answer: `{origin['unload_answer']}`", "",
        "## Deeply nested KServe V2 data", "",
        "| request | status |", "|---|---|",
        f"| `POST /v2/models/<m>/infer`, text BYTES data in {nesting['nesting']} nested lists | {nesting['status']} |",
        "", f"Answer: `{nesting['answer']}`", "",
    ]  # fmt: skip
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    args, started = parse_args(argv), time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": shlex.join(sys.orig_argv), "smoke": args.quick, "machine": report.machine_info()}
    results["load_average_before"] = report.load_average()
    bundle = resolve_bundle(args.model_dir, args.model, Path(tempfile.gettempdir()))
    results["bundle"] = bundle.describe()
    with tempfile.TemporaryDirectory(prefix="fusionserve-robustness-") as scratch:
        results["with_admin_key"] = asyncio.run(with_admin_key(bundle, args.cycles, Path(scratch)))
        results["keyless"] = asyncio.run(without_admin_key(bundle, Path(scratch)))
    results |= {"load_average_after": report.load_average(), "wall_s": round(time.perf_counter() - started, 1)}
    paths = [report.write_json(results, args.out), markdown(results, args.out)]
    say("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
