"""Runs → per-server medians, the two headline ratios, answer parity, and results.md."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.peers.compare import FUSIONSERVE

BATCHING = {
    FUSIONSERVE: "dynamic (max 32, 5 ms)",
    "fastapi": "none",
    "litserve": "max_batch_size 32, batch_timeout 5 ms",
    "pytriton": "Triton dynamic batcher (max 32, 5 ms queue delay)",
    "ceiling": "fusionserve's pipeline, no HTTP",
}


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def measured(runs: list[dict], name: str, workload: str) -> list[dict]:
    """The server's per-run results for one workload (runs where it failed or was skipped drop out)."""
    found = (r["servers"].get(name, {}).get("workloads", {}).get(workload) for r in runs)
    return [w for w in found if w is not None]


def non_200(summary: dict) -> int:
    return summary["requests"] - summary["ok"]


def server_stats(runs: list[dict], name: str, workload: str) -> dict | None:
    loops = measured(runs, name, workload)
    if not loops:
        return None
    c32 = [loop["c32"] for loop in loops]
    throughputs = [s["throughput"] for s in c32]
    return {
        "runs": len(loops),
        "req_s": median(throughputs),
        "req_s_min": min(throughputs),
        "req_s_max": max(throughputs),
        "p50_ms": median([s["p50_ms"] for s in c32]),
        "p99_ms": median([s["p99_ms"] for s in c32]),
        "c1_p50_ms": median([loop["c1"]["p50_ms"] for loop in loops]),
        "errors": sum(non_200(loop["c32"]) + non_200(loop["c1"]) for loop in loops),
        "server_cpu_cores": median([s.get("server_cpu_cores") for s in c32]),
        "client_cpu_cores": median([s.get("client_cpu_cores") for s in c32]),
    }


def ceiling_stats(runs: list[dict], workload: str) -> dict:
    closed = [r["ceiling"][workload]["closed"] for r in runs]
    throughputs = [c["throughput"] for c in closed]
    return {
        "runs": len(closed),
        "req_s": median(throughputs),
        "req_s_min": min(throughputs),
        "req_s_max": max(throughputs),
        "p50_ms": median([c["p50_ms"] for c in closed]),
        "p99_ms": median([c["p99_ms"] for c in closed]),
        "profile": runs[-1]["ceiling"][workload]["profile"],
    }


def c1_gap(runs: list[dict], workload: str) -> dict:
    """fusionserve's c=1 p50 against the in-process batch-1 p50 of the same run (the c=1 target: gap <= 1.5
    ms); runs from before batch-1 was measured in every run have none."""
    pairs = []
    for run in runs:
        ours = run["servers"].get(FUSIONSERVE, {}).get("workloads", {}).get(workload)
        if ours and workload in run.get("batch1", {}):
            pairs.append((run["batch1"][workload]["p50_ms"], ours["c1"]["p50_ms"]))
    return {
        "batch1_p50_ms": median([b for b, _ in pairs]),
        "gap_ms": median([c1 - b for b, c1 in pairs]),
        "gap_ms_runs": [round(c1 - b, 2) for b, c1 in pairs],
    }


def parity(runs: list[dict], name: str, workload: str) -> dict | None:
    """Top-1 label agreement with fusionserve on the same items, and the largest score difference."""
    mine, ref = measured(runs, name, workload), measured(runs, FUSIONSERVE, workload)
    if not mine or not ref:
        return None
    mine, ref = mine[0]["parity"], ref[0]["parity"]
    pairs = [(a, b) for a, b in zip(mine, ref, strict=False) if isinstance(a, list) and isinstance(b, list)]
    return {
        "items": len(ref),
        "same_top1": sum(a[0] == b[0] for a, b in pairs),
        "max_score_diff": round(max((abs(a[1] - b[1]) for a, b in pairs), default=0.0), 6),
        "errors": [a for a in mine if not isinstance(a, list)],
    }


def summarise(runs: list[dict], names: list[str], workloads: list[str]) -> dict:
    out = {}
    for workload in workloads:
        servers = {name: server_stats(runs, name, workload) for name in names}
        ceiling, ours = ceiling_stats(runs, workload), servers.get(FUSIONSERVE)
        peers = {n: s for n, s in servers.items() if n != FUSIONSERVE and s and s["req_s"]}
        best = max(peers, key=lambda n: peers[n]["req_s"], default=None)
        ours_rate = ours["req_s"] if ours else None
        over_ceiling = round(ours_rate / ceiling["req_s"], 3) if ours_rate and ceiling["req_s"] else None
        over_best = round(ours_rate / peers[best]["req_s"], 3) if ours_rate and best else None
        out[workload] = {
            "ceiling": ceiling,
            "servers": servers,
            "parity": {n: parity(runs, n, workload) for n in names if n != FUSIONSERVE},
            "best_peer": best,
            "fusionserve_over_ceiling": over_ceiling,
            "fusionserve_over_best_peer": over_best,
            "c1_vs_batch1": c1_gap(runs, workload),
        }
    return out


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(workload: str, result: dict, concurrency: int) -> list[str]:
    rows = [
        f"### {workload}",
        "",
        f"| server | batching | req/s at c={concurrency} (median; min–max) | p50 / p99 ms at c={concurrency} | "
        "p50 ms at c=1 | non-200 | server / client cores |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    c = result["ceiling"]
    rows.append(
        f"| in-process ceiling | {BATCHING['ceiling']} | {_f(c['req_s'])} ({_f(c['req_s_min'])}–{_f(c['req_s_max'])}) "
        f"| {_f(c['p50_ms'])} / {_f(c['p99_ms'])} | – | – | – |"
    )
    for name, s in result["servers"].items():
        if s is None:
            rows.append(f"| {name} | {BATCHING.get(name, '?')} | not measured (see below) | | | | |")
            continue
        rows.append(
            f"| {name} | {BATCHING.get(name, '?')} | {_f(s['req_s'])} ({_f(s['req_s_min'])}–{_f(s['req_s_max'])}) | "
            f"{_f(s['p50_ms'])} / {_f(s['p99_ms'])} | {_f(s['c1_p50_ms'])} | {s['errors']} | "
            f"{_f(s['server_cpu_cores'], 2)} / {_f(s['client_cpu_cores'], 2)} |"
        )
    rows += [
        "",
        f"fusionserve / ceiling: **{_f(result['fusionserve_over_ceiling'], 2)}** · fusionserve / best peer "
        f"({result['best_peer']}): **{_f(result['fusionserve_over_best_peer'], 2)}**",
        "",
    ]
    gap = result.get("c1_vs_batch1") or {}
    if gap.get("gap_ms") is not None:
        rows += [
            f"c=1: in-process batch-1 p50 {_f(gap['batch1_p50_ms'], 2)} ms (same bundle, preprocessing and sessions, "
            f"no queue, no HTTP); fusionserve's c=1 p50 minus it, per run {gap['gap_ms_runs']}: median "
            f"**{_f(gap['gap_ms'], 2)} ms** (target <= 1.5)",
            "",
        ]
    return rows


SMOKE = "**SMOKE RUN: phases of a few seconds on a shared, busy machine. Not for quoting.**"


def header(results: dict) -> list[str]:
    m, plan = results["machine"], results["plan"]
    dirty = " (dirty)" if m["git_dirty"] else ""
    return [
        "# fusionserve vs peers on the same ONNX",
        "",
        *([SMOKE, ""] if results["smoke"] else []),
        f"Command: `{results['command']}`  ",
        f"Date: {m['date']} · commit {m['git_commit']}{dirty} · wall time {results['wall_s']:.0f} s  ",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores ({m['cpu_count']} online), {m['platform']}, "
        f"Python {m['python']}; load average before / after: {results['load_average_before']} / "
        f"{results['load_average_after']}  ",
        f"Bundle: `{results['bundle']['path']}` (text encoder, image encoder, fusion head; every server runs "
        "encoder → fusion → softmax → top 5)  ",
        "Load: bench/loadgen.py closed loop, bench/rawhttp.py client (raw, keep-alive): "
        f"{plan['concurrency']} clients for "
        f"{plan['duration_s']} s after {plan['warmup_s']} s of warm-up, then 1 client for {plan['c1_duration_s']} s; "
        f"JSON, one item per request; {plan['runs']} alternating run(s), the order rotated each run; medians "
        "over runs.  ",
        f"onnxruntime: {plan['threads']} intra-op threads per session in every server and in the ceiling.",
    ]


def markdown(results: dict, out: Path) -> Path:
    lines = [*header(results), "", "## Results", ""]
    for workload, result in results["summary"].items():
        lines += table(workload, result, results["plan"]["concurrency"])
    lines += ["## Versions", "", *[f"- {k}: {v}" for k, v in results["versions"].items()], ""]
    lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path
