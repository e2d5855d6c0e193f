"""bench/scale.py's arithmetic and results: the cores projection, the ratios to one process, the per-role CPU and the
engine projection's tables (bench/roles.py), and results.json + results.md (targets: bench/scale_targets.py)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report
from bench.scale_role_tables import role_section

ITEMS_PER_S = 10_000  # the projection's load: one item per bench request
BASE = "one-process"
SMOKE = "**SMOKE RUN: seconds per phase on a shared machine. Not for quoting.**"
BUNDLE_TITLES = {"standin": "Stand-in bundle (random weights, cheap graphs)", "default": "Default bundle (tridigits/1)"}
NOTES = (
    "Server CPU is read from /proc over each measured window for every live process of each server's tree; a "
    "process that exits inside a window (none should) takes its CPU with it.",
    "independent-N runs N copies of everything (N times the models' memory, N batchers that each see 1/N of the "
    "traffic, so smaller batches); front-ends-N shares one engine. N=1 of it is one-process and is not run again.",
    "Modes run one after another, not interleaved: on a shared machine only ratios within one run compare.",
    "RSS is summed over a server's processes (memory shared between them counted in each).",
    "Roles (bench/roles.py): the supervisor is the tree's root, a front-end holds the HTTP listening socket, an "
    "engine its engine-<i>.sock ipc socket, helpers are multiprocessing's resource tracker; independent-N's roles "
    "are summed over its N servers. Client: this bench process (the load generator), over the same window.",
    "Engine req/s = 1e6 / the engine's CPU µs per request: what one engine process could take on one core at "
    "this cost, if nothing else (batch sizes, the front-ends, the cores left) limited it.",
)


def cores_for(items_per_s: float, cpu_ms_per_request: float | None) -> float | None:
    """Cores that `items_per_s` would keep busy at this CPU cost (one item per request)."""
    return None if cpu_ms_per_request is None else round(items_per_s * cpu_ms_per_request / 1000, 2)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else round(numerator / denominator, 3)


def run_of(modes: dict, mode: str, workload: str) -> dict:
    return modes.get(mode, {}).get("workloads", {}).get(workload, {})


def closed(modes: dict, mode: str, workload: str) -> dict:
    return run_of(modes, mode, workload).get("closed", {})


def role_us(modes: dict, mode: str, workload: str, label: str) -> float | None:
    """CPU µs per request of one role label ("engines", "tree", "front-end-0", …) in one run; None: not measured."""
    return (run_of(modes, mode, workload).get("roles", {}).get("cpu_us_per_request") or {}).get(label)


def c1_p50(modes: dict, mode: str, workload: str) -> float | None:
    return modes.get(mode, {}).get("workloads", {}).get(workload, {}).get("c1", {}).get("p50_ms")


def ratios(modes: dict) -> dict:
    """Per workload and mode: req/s ÷ one process's, and CPU ms per request (one process's alongside)."""
    out = {}
    for workload in modes.get(BASE, {}).get("workloads", {}):
        base = closed(modes, BASE, workload)
        out[workload] = {
            mode: {
                "req_s_vs_one_process": ratio(closed(modes, mode, workload).get("throughput"), base.get("throughput")),
                "cpu_ms_per_request": closed(modes, mode, workload).get("server_cpu_ms_per_request"),
                "one_process_cpu_ms_per_request": base.get("server_cpu_ms_per_request"),
            }
            for mode, record in modes.items()
            if mode != BASE and "workloads" in record
        }
    return out


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def progress(result: dict) -> str:
    """One line per run for the console."""
    c, c1 = result["closed"], result.get("c1", {})
    line = f"{c['throughput']:8.1f} req/s  p50 {c['p50_ms']} ms  p99 {c['p99_ms']} ms  errors {c['error_rate']}  "
    line += f"CPU {c.get('server_cpu_ms_per_request')} ms/req"
    us = result.get("roles", {}).get("cpu_us_per_request") or {}
    if "engines" in us:
        line += f" (front-ends {us.get('front-ends')} µs, engine {us['engines']} µs)"
    return line + (f"  c=1 p50 {c1.get('p50_ms')} ms" if c1 else "")


def run_rows(modes: dict) -> list[str]:
    rows = [
        "| workload | mode | processes | req/s | p50 / p99 ms | c=1 p50 ms | non-200 | server CPU ms/req | "
        "server / client cores | cores for 10k items/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    workloads = next((m["workloads"] for m in modes.values() if "workloads" in m), {})
    for workload in workloads:
        for mode, record in modes.items():
            if workload not in record.get("workloads", {}):
                continue
            result = record["workloads"][workload]
            c, processes = result["closed"], " + ".join(str(s["processes"]) for s in record["servers"])
            errors = sum(n for status, n in c["status_counts"].items() if status != "200")
            rows.append(
                f"| {workload} | {mode} | {processes} | {_f(c['throughput'])} | {_f(c['p50_ms'])} / "
                f"{_f(c['p99_ms'])} | {_f(result.get('c1', {}).get('p50_ms'), 2)} | {errors} | "
                f"{_f(c.get('server_cpu_ms_per_request'), 2)} | {_f(c.get('server_cpu_cores'), 2)} / "
                f"{_f(c.get('client_cpu_cores'), 2)} | {_f(result['cores_for_10k_items_per_s'])} |"
            )
    for mode, record in modes.items():
        if "workloads" not in record:
            reason = record.get("skipped") or "did not start: " + record["error"].splitlines()[-1][:200]
            rows.append(f"| (all) | {mode} | – | {reason} | – | – | – | – | – | – |")
    return rows


def ratio_rows(bundle: dict) -> list[str]:
    table = bundle["ratios"]
    others = list(next(iter(table.values()), {}))
    if not others:
        return ["No mode besides one-process was measured."]
    rows = [
        "| workload | one-process req/s | " + " | ".join(f"{m} / one-process" for m in others)
        + " | CPU ms/req: one-process | " + " | ".join(others) + " |",
        "|---|" + "---:|" * (2 + 2 * len(others)),
    ]  # fmt: skip
    for workload, row in table.items():
        base = bundle["modes"][BASE]["workloads"][workload]["closed"]
        speed = " | ".join(_f(row[m]["req_s_vs_one_process"], 2) for m in others)
        cpu = " | ".join(_f(row[m]["cpu_ms_per_request"], 2) for m in others)
        rows.append(
            f"| {workload} | {_f(base['throughput'])} | {speed} | {_f(base.get('server_cpu_ms_per_request'), 2)} | "
            f"{cpu} |"
        )
    return rows


def target_rows(rows: list[dict]) -> list[str]:
    """The measured targets as a table, then one line naming those this run did not measure (a focused run)."""
    lines = ["| target | this run | met |", "|---|---:|---|"]
    missing = [row["target"] for row in rows if row["value"] is None]
    for row in (row for row in rows if row["value"] is not None):
        if row["op"] is None:  # a figure to compare with an older commit's
            lines.append(f"| {row['target']} | {_f(row['value'], 2)} | reported |")
            continue
        met = "met" if row["met"] else "**not met**"
        value = _f(row["value"], 3 if row["threshold"] < 10 else 1)  # ratios to 3 places: 0.969 is not 0.97
        lines.append(f"| {row['target']} {row['op']} {row['threshold']:g} | {value} | {met} |")
    return lines + (["", "Not measured in this run: " + "; ".join(missing) + "."] if missing else [])


def header(results: dict) -> list[str]:
    plan = results["plan"]
    workers = "" if results["workers_setting"] else (
        " **FUSIONSERVE_WORKERS is not a setting of this build**: every server ran as one process (WORKERS unset), "
        "the front-ends-N modes were skipped."
    )  # fmt: skip
    return [
        "# fusionserve across processes",
        "",
        *([SMOKE, ""] if results["smoke"] else []),
        *report.run_lines(results),
        f"Load: closed loop, {plan['concurrency']} raw keep-alive clients on {plan.get('loop', 'asyncio')}, one "
        "item per `/classify` request (text-json: JSON, the others multipart), "
        f"{plan['warmup_s']} s warm-up + {plan['duration_s']} s measured per phase (default bundle: "
        f"{plan['real_warmup_s']} + {plan['real_duration_s']} s), then c=1 for {plan.get('c1_warmup_s', 1.0)} + "
        f"{plan['c1_duration_s']} s (not independent-N). FUSIONSERVE_INTRA_OP_THREADS: "
        f"{plan.get('intra_op_threads') or 'unset'}. independent-N: requests go to the N servers in turn. Server "
        "CPU: every server's whole process tree (supervisor, front-ends, engine), over the measured window, and "
        f"per role below. Cores for 10k items/s = {ITEMS_PER_S:,} × server CPU ms per request / 1000.{workers}",
    ]


def bundle_section(key: str, bundle: dict) -> list[str]:
    b = bundle["bundle"]
    skipped = bundle["skipped_workloads"] or "none"
    about = f"`{b['path']}`: modalities {b['modalities']}, {b['onnx_bytes'] / 1e6:.0f} MB of ONNX. Skipped workloads: "
    lines = [f"## {BUNDLE_TITLES.get(key, key)}", "", f"{about}{skipped}."]
    lines += ["", *run_rows(bundle["modes"]), "", server_line(bundle["modes"]), "", *role_section(bundle["modes"])]
    return [*lines, "Ratios to one process:", "", *ratio_rows(bundle), ""]


def server_line(modes: dict) -> str:
    """Per mode: each server's seconds from spawn to ready and its process tree's RSS at the end."""
    parts = []
    for mode, record in modes.items():
        servers = record.get("servers", [])
        if servers:
            ready = " / ".join(f"{s['ready_s']:.1f}" for s in servers)
            rss = sum(s.get("rss_mb", 0.0) for s in servers)
            parts.append(f"{mode} ready after {ready} s, RSS {rss:.0f} MB")
    return "Servers: " + "; ".join(parts) + "." if parts else ""


def write(results: dict, out: Path) -> Path:
    """results.json and results.md under `out`; the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [*header(results), ""]
    for key, bundle in results["bundles"].items():
        lines += bundle_section(key, bundle)
    lines += [f"Skipped bundle {key}: {why}\n" for key, why in results["skipped_bundles"].items()]
    lines += ["## Targets", "", *target_rows(results["targets"]), "", "## Notes", ""]
    lines += [f"- {note}" for note in NOTES] + [""]
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path
