"""`python -m bench.soak` (= `make bench-soak`): fusionserve's memory under steady load, per workload.

For each workload (text-only, image-only, all-three): a fresh server with the settings that ship, a closed
loop of 16 clients for --duration seconds (default 600), VmRSS read from /proc/<pid>/status every second.
Reports RSS after the warm-up (default: the first 10 % of the run, 60 s of 600), at the end, the growth
after warm-up (target ≤ 5 %), the slope, and the curves as rss.png. Writes results.json, results.md, rss.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import report
from bench.loadgen import closed_loop, say
from bench.rawhttp import RawClient
from bench.runner import cpu_meter
from bench.server import HOST, ServerProcess
from bench.workloads import WORKLOADS, build_workloads, resolve_bundle

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "soak"
CHUNK_S = 60.0  # the closed loop runs in chunks (each under loadgen's per-phase request cap)
GROWTH_TARGET_PCT = 5.0
EDGE = 5  # samples (seconds) whose median is "RSS after warm-up" and "RSS at the end"
SMOKE = "**SMOKE RUN: a few seconds per workload on a shared, busy machine. Not for quoting.**"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def sample(pid: int, started: float, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Append (seconds since start, RSS MB) once a second until `stop` is set."""
    while not stop.is_set():
        value = rss_mb(pid)
        if value is not None:
            samples.append((round(time.perf_counter() - started, 2), round(value, 1)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def load(server: ServerProcess, requests: list[bytes], client: RawClient, args) -> dict:
    """The steady closed loop, in chunks of CHUNK_S; status counts and throughput over all of them."""
    counts, chunks, remaining = {}, [], args.duration
    while remaining > 0:
        length = min(CHUNK_S, remaining)
        chunk = await closed_loop(
            client.send, requests, concurrency=args.clients, warmup_s=0.0, duration_s=length, meter=cpu_meter(server)
        )
        for status, n in chunk["status_counts"].items():
            counts[status] = counts.get(status, 0) + n
        chunks.append({k: chunk.get(k) for k in ("throughput", "p50_ms", "p99_ms", "server_cpu_cores")})
        remaining -= length
    ok = counts.get("200", 0)
    return {"status_counts": counts, "throughput": round(ok / args.duration, 2), "chunks": chunks}


def median(values: list[float]) -> float:
    return round(float(np.median(values)), 1)


def growth(samples: list[tuple[float, float]], warmup_s: float) -> dict:
    after = [(t, v) for t, v in samples if t >= warmup_s]
    if len(after) < 2:
        return {"rss_after_warmup_mb": None, "rss_end_mb": None, "growth_pct": None, "pass": None}
    values_after = [v for _, v in after]
    start, end = median(values_after[:EDGE]), median(values_after[-EDGE:])  # robust to one odd reading
    times, values = np.array([t for t, _ in after]), np.array([v for _, v in after])
    slope = float(np.polyfit(times, values, 1)[0]) * 60 if len(after) > 2 else None
    pct = (end - start) / start * 100
    return {
        "rss_after_warmup_mb": start,
        "rss_end_mb": end,
        "rss_max_after_warmup_mb": float(values.max()),
        "growth_pct": round(pct, 2),
        "slope_mb_per_min": None if slope is None else round(slope, 3),
        "pass": pct <= GROWTH_TARGET_PCT,
    }


async def soak_workload(bundle, workload, args, log_dir: Path) -> dict:
    overrides = {"model_dir": str(bundle.model_dir), "models": [bundle.name], "log_level": "warning"}
    with ServerProcess(overrides, log_dir / f"server-{workload.name}.log") as server:
        say(f"  {workload.name}: ready in {server.ready_s:.1f}s; {args.clients} clients for {args.duration:.0f}s")
        client = RawClient(HOST, server.port, args.clients, 30.0)
        path = f"/v1/models/{bundle.name}/classify?version={bundle.version}"
        requests = [client.build(path, body, headers) for body, headers in workload.bodies]
        samples, stop, started = [], asyncio.Event(), time.perf_counter()
        sampler = asyncio.create_task(sample(server.process.pid, started, samples, stop))
        try:
            loop = await load(server, requests, client, args)
        finally:
            stop.set()
            await sampler
            await client.aclose()
        result = {"ready_s": round(server.ready_s, 2), "load": loop, "samples": samples}
        result |= {"connections_opened": client.connections_opened, **growth(samples, args.warmup)}
        result["peak_rss_mb"] = server.memory_mb().get("peak_rss_mb")
    say(
        f"  {workload.name}: {loop['throughput']:.1f} req/s {loop['status_counts']}; RSS "
        f"{result['rss_after_warmup_mb']} → {result['rss_end_mb']} MB ({result['growth_pct']} %)"
    )
    return result


def plot(results: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for index, (name, w) in enumerate(results["workloads"].items()):
        axes.plot([t for t, _ in w["samples"]], [v for _, v in w["samples"]], color=f"C{index}", label=name)
    axes.axvline(results["warmup_s"], color="grey", linestyle="--", label="end of warm-up")
    axes.set_xlabel("seconds under load (each workload on a fresh server)")
    axes.set_ylabel("server RSS (MB, VmRSS)")
    title = f"fusionserve RSS soak, {results['clients']} closed-loop clients"
    axes.set_title(title + (" — SMOKE" if results["smoke"] else ""))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = out / "rss.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict, out: Path) -> Path:
    lines = [
        "# fusionserve RSS soak",
        "",
        *([SMOKE, ""] if results["smoke"] else []),
        *report.run_lines(results),
        f"Bundle: `{results['bundle']['path']}`; shipped settings (only model_dir, models, log_level set). "
        f"Load: {results['clients']} closed-loop clients (keep-alive), multipart, one item per request, "
        f"{results['duration_s']:.0f} s per workload on a fresh server; RSS (VmRSS) sampled every second; "
        f"warm-up = first {results['warmup_s']:.0f} s.",
        "",
        "![RSS over time](rss.png)",
        "",
        "| workload | req/s | statuses | RSS after warm-up MB | RSS at end MB | max after warm-up MB | growth "
        f"(target ≤ {GROWTH_TARGET_PCT:g} %) | slope MB/min | verdict |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, w in results["workloads"].items():
        verdict = "–" if w["pass"] is None else ("PASS" if w["pass"] else "FAIL")
        lines.append(
            f"| {name} | {_f(w['load']['throughput'])} | {w['load']['status_counts']} | "
            f"{_f(w['rss_after_warmup_mb'])} | {_f(w['rss_end_mb'])} | {_f(w.get('rss_max_after_warmup_mb'))} | "
            f"{_f(w['growth_pct'], 2)} % | {_f(w.get('slope_mb_per_min'), 2)} | {verdict} |"
        )
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 s per workload (not for quoting)")
    parser.add_argument("--duration", type=float, help="seconds of load per workload (default 600; --quick 20)")
    parser.add_argument("--warmup", type=float, help="seconds excluded from the growth (default duration / 10)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--workloads", default="text-only,image-only,all-three", help=f"subset of {','.join(WORKLOADS)}"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.duration = args.duration or (20.0 if args.quick else 600.0)
    args.warmup = args.warmup if args.warmup is not None else args.duration / 10
    if args.duration <= 0 or not 0 <= args.warmup < args.duration or args.clients < 1:
        raise SystemExit("bench.soak: need duration > warm-up >= 0 and clients >= 1")
    return args


async def run_all(bundle, workloads, args, log_dir: Path) -> dict:
    return {w.name: await soak_workload(bundle, w, args, log_dir) for w in workloads}


def main(argv: list[str] | None = None) -> None:
    args, started = parse_args(argv), time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"command": shlex.join(sys.orig_argv), "smoke": args.quick, "machine": report.machine_info()}
    results |= {"load_average_before": report.load_average(), "duration_s": args.duration, "warmup_s": args.warmup}
    results |= {"clients": args.clients, "growth_target_pct": GROWTH_TARGET_PCT}
    bundle = resolve_bundle(args.model_dir, args.model, Path(tempfile.gettempdir()))
    workloads = [w for w in build_workloads(bundle, 32)[0] if w.name in args.workloads.split(",")]
    if not workloads:
        raise SystemExit(f"bench.soak: no workload among {args.workloads}")
    say(f"soak: {[w.name for w in workloads]}, {math.ceil(args.duration)} s each, warm-up {args.warmup:.0f} s")
    with tempfile.TemporaryDirectory(prefix="fusionserve-soak-") as scratch:
        results["workloads"] = asyncio.run(run_all(bundle, workloads, args, Path(scratch)))
    results |= {"bundle": bundle.describe(), "load_average_after": report.load_average()}
    results["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    paths = [markdown(results, args.out), plot(results, args.out)]
    say("wrote " + ", ".join(str(p) for p in [args.out / "results.json", *paths]))


if __name__ == "__main__":
    main()
