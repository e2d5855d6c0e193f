"""Machine description and the three outputs: results.json, results.md, latency_vs_load.png."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import onnxruntime

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    status = _git("status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load: a busy machine (other jobs) shows here and makes every number noisier."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def command_line(module: str, argv: list[str] | None) -> str:
    """How a bench module was run, for its results files."""
    return f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])


def write_small_run(out: Path, stem: str, command: str, result: dict, text: str) -> None:
    """<stem>.json (with the command) and <stem>.md under `out`, and the markdown on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"command": command, **result}, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text)


def write_json(results: dict, out: Path) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_rows(results: dict) -> list[str]:
    rows = [
        "| workload | ceiling items/s | server req/s | server/ceiling | batching off req/s | on/off | "
        "server p50 / p99 ms | ceiling p50 / p99 ms | server errors (on / off) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in results["workloads"].items():
        ceiling, on, off, ratios = w["ceiling"], w["server"], w["server_batching_off"], w["ratios"]
        rows.append(
            f"| {name} | {_fmt(ceiling['throughput'])} | {_fmt(on['throughput'])} | "
            f"{_fmt(ratios['server_over_ceiling'], 2)} | {_fmt(off['throughput'])} | "
            f"{_fmt(ratios['batching_on_over_off'], 2)} | {_fmt(on['p50_ms'])} / {_fmt(on['p99_ms'])} | "
            f"{_fmt(ceiling['p50_ms'])} / {_fmt(ceiling['p99_ms'])} | "
            f"{_fmt(on['error_rate'] * 100, 2)}% / {_fmt(off['error_rate'] * 100, 2)}% |"
        )
    return rows


def open_loop_rows(results: dict) -> list[str]:
    rows = [
        "| workload | offered (x capacity) | offered req/s | achieved req/s | p50 ms | p99 ms | errors | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, w in results["workloads"].items():
        for p in w["open_loop"]:
            statuses = ", ".join(f"{k}: {v}" for k, v in p["status_counts"].items())
            rows.append(
                f"| {name} | {p['fraction_of_capacity']:.2f} | {_fmt(p['offered_rate'])} | {_fmt(p['throughput'])} | "
                f"{_fmt(p['p50_ms'])} | {_fmt(p['p99_ms'])} | {_fmt((p['error_rate'] or 0) * 100, 2)}% | {statuses} |"
            )
    return rows


def profile_rows(results: dict) -> list[str]:
    rows = [
        "| workload | preprocess ms/item | compute ms/item, batch 1 | compute ms/item, batched "
        "| compute share at batch 1 | ceiling CPU ms/item | server CPU ms/req | server / client cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in results["workloads"].items():
        p, on, ceiling = w["profile"], w["server"], w["ceiling"]
        rows.append(
            f"| {name} | {p['preprocess_ms']:.2f} | {p['compute_batch1_ms']:.3f} | "
            f"{p['compute_batched_ms_per_item']:.3f} (batch {p['batch_size']}) | {p['compute_share_batch1']:.0%} | "
            f"{_fmt(ceiling.get('cpu_ms_per_item'), 2)} | {_fmt(on.get('server_cpu_ms_per_request'), 2)} | "
            f"{_fmt(on.get('server_cpu_cores'), 2)} / {_fmt(on.get('client_cpu_cores'), 2)} |"
        )
    return rows


def header_lines(results: dict) -> list[str]:
    machine, bundle, plan, servers = results["machine"], results["bundle"], results["plan"], results["servers"]
    return [
        "# fusionserve benchmark results",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {machine['date']} · commit {machine['git_commit']}{' (dirty)' if machine['git_dirty'] else ''}  ",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, Python {machine['python']}, "
        f"onnxruntime {machine['onnxruntime']}; load average before/after: "
        f"{results['load_average_before']} / {results['load_average_after']}  ",
        f"Bundle: {bundle['name']}/{bundle['version']} ({bundle['source']}), modalities {bundle['modalities']}, "
        f"image {bundle['image_size']} px, {bundle['n_mels']} mels, text ≤ {bundle['text_max_length']} tokens, "
        f"dim {bundle['embedding_dim']}  ",
        f"Load: closed loop, {plan['concurrency']} concurrent clients, {plan['duration_s']} s per phase; one item per "
        f"request (multipart, `/classify`). Total wall time {results['wall_s']:.0f} s.  ",
        "Server process (batching on / off): ready "
        f"{servers['batching_on'].get('ready_s')} / {servers['batching_off'].get('ready_s')} s after spawn, "
        f"peak RSS {servers['batching_on'].get('peak_rss_mb')} / {servers['batching_off'].get('peak_rss_mb')} MB.",
    ]


def write_markdown(results: dict, out: Path) -> Path:
    lines = [
        *header_lines(results),
        "",
        "## Throughput and latency (closed loop)",
        "",
        *summary_rows(results),
        "",
        "## Latency vs offered load (open loop, Poisson arrivals, batching on)",
        "",
        "![latency vs load](latency_vs_load.png)",
        "",
        *open_loop_rows(results),
        "",
        "## Where the time goes",
        "",
        "Preprocess and compute: single-threaded, per item, outside any load. CPU columns: measured over the "
        "closed-loop windows (all threads of the process).",
        "",
        *profile_rows(results),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in results["notes"]],
        "",
    ]
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path


def plot(results: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for index, (name, w) in enumerate(results["workloads"].items()):
        points = [p for p in w["open_loop"] if p["p50_ms"] is not None]
        x = [p["fraction_of_capacity"] for p in points]
        label = f"{name} (capacity {w['server']['throughput']:.0f} req/s)"
        colour = f"C{index}"
        axes.plot(x, [p["p50_ms"] for p in points], "o-", color=colour, label=f"{label} p50")
        axes.plot(x, [p["p99_ms"] for p in points], "s--", color=colour, label=f"{label} p99")
    axes.set_yscale("log")
    axes.set_xlabel("offered load (fraction of measured closed-loop capacity, per workload)")
    axes.set_ylabel("latency from scheduled arrival (ms, log)")
    axes.set_title("fusionserve: latency vs offered load (batching on)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = out / "latency_vs_load.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run_lines(results: dict) -> list[str]:
    """A results page's provenance: the command, date, commit, wall time, machine and load average."""
    m = results["machine"]
    return [
        f"Command: `{results['command']}`  ",
        f"Date: {m['date']} · commit {m['git_commit']}{' (dirty)' if m['git_dirty'] else ''} · wall time "
        f"{results['wall_s']:.0f} s  ",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['platform']}, Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}; load average before / after: {results['load_average_before']} / "
        f"{results['load_average_after']}  ",
    ]
