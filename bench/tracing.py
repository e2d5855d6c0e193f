"""What tracing costs: server CPU µs per request and req/s with tracing off (no OTEL_* variables), on
(exporting every span over OTLP to a receiver in this process), and — with --before — this tree's server
against an older checkout's (BENCH_SERVER_TREE semantics: `git worktree add /tmp/before <commit>`), side by
side in one run: every variant's server is up at once and the measuring windows take turns (variant A, B, C,
A, B, C…), so a machine that gets busier part way through weighs on all of them alike.

    python -m bench.tracing [--before /tmp/before] [--tree /tmp/after] [--seconds 4] [--rounds 3] [--concurrency 8]
                            [--workers 0]

Writes bench/results/tracing/README.md and tracing.json (with the command). The load is one small text item
per request (v1 classify) so the per-request parts — the request span, decode, queue, batch, fusion — are a
visible share of the work; a heavier item dilutes the same absolute cost. With uncommitted work of others in
this checkout, compare two clean worktrees: --tree at the tracing commit, --before at its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import command_line, machine_info, write_small_run
from bench.server import ServerProcess
from bench.workloads import resolve_bundle
from tests.otlp_receiver import OtlpReceiver

OUT = Path(__file__).parent / "results" / "tracing"
BODY = {"inputs": [{"text": "a short sentence that the bench classifies again and again"}]}


async def window(url: str, model: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """(answers 200, others) from `concurrency` clients posting for `seconds`."""
    ok, failed, stop = 0, 0, time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:

        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < stop:
                answer = await client.post(f"{url}/v1/models/{model}/classify", json=BODY)
                ok, failed = (ok + 1, failed) if answer.status_code == 200 else (ok, failed + 1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed


def measure(server: ServerProcess, model: str, seconds: float, concurrency: int) -> dict:
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    ok, failed = asyncio.run(window(server.url, model, seconds, concurrency))
    cpu, wall = server.cpu_seconds() - cpu0, time.perf_counter() - t0
    return {"ok": ok, "failed": failed, "wall_s": wall, "cpu_s": cpu}


def variants(args, receiver: OtlpReceiver) -> dict[str, tuple[dict, str | None]]:
    """name → (extra environment, server tree or None for this one)."""
    exporting = receiver.environment()
    exporting.pop("OTEL_BSP_SCHEDULE_DELAY")  # the SDK's default (5 s), as a deployment has it; the tests' is 50 ms
    tree = str(args.tree) if args.tree is not None else None
    found = {"off": ({}, tree), "on": (exporting, tree)}
    if args.before is not None:
        found["before"] = ({}, str(args.before))
    return found


@contextlib.contextmanager
def started(name: str, env: dict, tree: str | None, overrides: dict, scratch: Path):
    """One variant's server: its OTEL_* variables and tree in the environment only while it starts."""
    saved = dict(os.environ)
    os.environ.update(env)
    if tree is not None:
        os.environ["BENCH_SERVER_TREE"] = tree
    try:
        server = ServerProcess(overrides, scratch / f"{name}.log")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with server:
        yield server


def off_path_us(repeat: int = 100_000) -> float:
    """µs per request of every tracing call site a one-item request passes with tracing off (measured here, in
    this process: what the off switch costs by construction, free of the machine's noise)."""
    from service import tracing
    from service.tracing import spans

    assert not tracing.ENABLED
    started = time.perf_counter()
    for _ in range(repeat):
        spans.annotate_request("m", None, "e")
        spans.traced_prepare(len)
        spans.waiting()
        with spans.batch_span("text", "m", [None]):
            pass
        spans.inline_fusion(1, 0.0)
        tracing.inject({})
    return 1e6 * (time.perf_counter() - started) / repeat


def summarise(windows: dict[str, list[dict]]) -> dict:
    rows = {}
    for name, runs in windows.items():
        ok = sum(r["ok"] for r in runs)
        rows[name] = {"requests": ok, "failed": sum(r["failed"] for r in runs),
                      "req_per_s": ok / sum(r["wall_s"] for r in runs),
                      "cpu_us_per_request": 1e6 * sum(r["cpu_s"] for r in runs) / max(ok, 1)}  # fmt: skip
    return rows


def report(rows: dict, spans: int, off_us: float, command: str, args) -> str:
    lines = ["# Tracing's cost", "", f"`{command}`", "",
             f"Tiny-text classify, c={args.concurrency}, workers={args.workers}, {args.rounds} rounds of "
             f"{args.seconds:g} s per variant, interleaved; a shared 2-core machine (load average "
             f"{os.getloadavg()[0]:.1f} at the end: ratios, not absolutes).", "",
             "| variant | req/s | server CPU µs / request | vs off |", "|---|---|---|---|"]  # fmt: skip
    base = rows["off"]["cpu_us_per_request"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['req_per_s']:.0f} | {row['cpu_us_per_request']:.0f} | "
                     f"{row['cpu_us_per_request'] / base:.3f}× |")  # fmt: skip
    lines += [
        "",
        f"Spans the receiver decoded during the run: {spans}. The tracing call sites a one-item request "
        f"passes cost {off_us:.2f} µs together with tracing off (in-process loop).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout (git worktree) to run as 'before'")
    parser.add_argument("--tree", type=Path, help="the checkout whose server runs off and on (default: this one)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="FUSIONSERVE_WORKERS (0: one process)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch_dir, OtlpReceiver("http/protobuf") as receiver:
        scratch = Path(scratch_dir)
        bundle = resolve_bundle(None, None, scratch / "models")
        overrides = {"model_dir": str(bundle.model_dir), "workers": args.workers, "intra_op_threads": 1,
                     "warmup_batch_sizes": [1], "log_level": "warning"}  # fmt: skip
        with contextlib.ExitStack() as stack:
            servers = {name: stack.enter_context(started(name, env, tree, overrides, scratch))
                       for name, (env, tree) in variants(args, receiver).items()}  # fmt: skip
            windows: dict[str, list[dict]] = {name: [] for name in servers}
            names = list(servers)
            for round_ in range(args.rounds):  # each round in another order: no variant always goes first
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    server = servers[name]
                    windows[name].append(measure(server, bundle.name, args.seconds, args.concurrency))
        rows = summarise(windows)
        spans = len(receiver.spans)
    command = command_line("bench.tracing", argv)
    off_us = off_path_us()
    result = {"machine": machine_info(), "variants": rows, "windows": windows, "spans_received": spans,
              "off_call_sites_us_per_request": off_us, "load_average": os.getloadavg()}  # fmt: skip
    write_small_run(OUT, "tracing", command, result, report(rows, spans, off_us, command, args))
    (OUT / "tracing.md").rename(OUT / "README.md")


if __name__ == "__main__":
    main()
