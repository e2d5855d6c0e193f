"""`python -m bench.scale` (= `make bench-scale`): one server process against several.

Per bundle — the stand-in (random weights, built by the bench) and the real default bundle tridigits/1 — and per
workload (text-json: one text per JSON classify; text-only, image-only PNG photos, jpeg-only JPEG photos, all-three:
one multipart item), ways to use the machine:
- `one-process`: FUSIONSERVE_WORKERS=0, one process doing everything;
- `front-ends-N`: FUSIONSERVE_WORKERS=N, N front-end processes + one engine process under one supervisor;
- `independent-N`: N full servers (WORKERS=0) on their own ports, the naive alternative; requests go to them
  in turn (N=1 is skipped: it is one-process);
- `default` (default bundle only): FUSIONSERVE_WORKERS unset, the setting that ships.
Per run: a closed loop at the plan's concurrency (req/s, p50/p99, statuses, server and client cores, CPU µs per
request per role — supervisor, each front-end, each engine, helpers, whole tree — bench/roles.py), the requests/s
one engine process could take (1e6 / engine µs per request), the cores that 10,000 items/s would take (10,000 × CPU
ms per request / 1000: one item per request), then (not independent-N) a c=1 closed loop (p50). Writes results.json
and results.md (ratios, projections, targets met / not met) to --out. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench import report, scale_report, scale_targets
from bench.loadgen import closed_loop, run_loop, say, spread_target, uvloop_available
from bench.roles import RoleMeter
from bench.runner import Plan, per_request
from bench.scale_workloads import NAMES, default_bundle, scale_workloads
from bench.server import HOST, ServerProcess
from bench.workloads import Bundle, resolve_bundle
from service.settings import Settings

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "scale"
KINDS = ("one-process", "default", "front-ends", "independent")
BUNDLES = ("standin", "default")


@dataclass(frozen=True)
class ScalePlan:
    duration_s: float = 4.0  # measured closed-loop window per workload and mode (stand-in bundle)
    warmup_s: float = 1.0  # unmeasured closed loop before it
    real_duration_s: float = 3.0  # the default bundle's encoders are slow on CPU: shorter phases
    real_warmup_s: float = 1.0
    c1_warmup_s: float = 0.5
    c1_duration_s: float = 3.0  # the c=1 closed loop after each c=32 one (not independent-N: it is one-process)
    concurrency: int = Plan.concurrency
    pool: int = 16  # distinct pre-generated items per workload
    ns: tuple[int, ...] = (1, 2)
    http_timeout_s: float = 30.0
    client: str = Plan.client
    intra_op_threads: int | None = None  # FUSIONSERVE_INTRA_OP_THREADS for every server; None: the server's default
    loop: str = "uvloop"  # the load generator's event loop: uvloop spends less of the cores the server needs

    def as_dict(self) -> dict:
        return asdict(self)


# --quick: a smoke run, seconds per phase and 16 clients (as bench.runner's QUICK). Not for quoting.
QUICK = ScalePlan(
    duration_s=1.5, warmup_s=0.5, real_duration_s=1.5, real_warmup_s=0.5, c1_warmup_s=0.3, c1_duration_s=1.0,
    concurrency=16, pool=8,
)  # fmt: skip


@dataclass(frozen=True)
class Mode:
    name: str
    servers: int = 1  # independent server processes
    workers: int | None = 0  # FUSIONSERVE_WORKERS; None = unset
    skipped: str | None = None  # why this mode is not run
    c1: bool = True  # also a c=1 closed loop (independent-N's c=1 is one-process's)


def modes_for(kinds: list[str], ns: tuple[int, ...], real: bool, workers_setting: bool) -> list[Mode]:
    """The modes to run (and the skipped ones, with the reason) for one bundle."""
    zero = 0 if workers_setting else None  # before FUSIONSERVE_WORKERS exists, unset is the one-process mode
    modes = [Mode("one-process", workers=zero)] if "one-process" in kinds else []
    if "default" in kinds and real:
        modes.append(Mode("default", workers=None))
    missing = None if workers_setting else "FUSIONSERVE_WORKERS is not a setting of this build"
    if "front-ends" in kinds:
        modes += [Mode(f"front-ends-{n}", workers=n, skipped=missing) for n in ns]
    if "independent" in kinds:
        for n in ns:
            modes.append(Mode(f"independent-{n}", n, zero, "equals one-process" if n == 1 else None, c1=False))
    return modes


async def load(send, requests: list, servers: list[ServerProcess], plan: ScalePlan, real: bool, c1: bool) -> dict:
    """The closed loop at the plan's concurrency, with CPU per request per role, then (`c1`) one at c=1."""
    warmup, duration = (plan.real_warmup_s, plan.real_duration_s) if real else (plan.warmup_s, plan.duration_s)
    meter = RoleMeter(servers)
    closed = await closed_loop(
        send, requests, concurrency=plan.concurrency, warmup_s=warmup, duration_s=duration, meter=meter
    )
    per_request(closed, duration)
    roles = meter.window(closed["requests"])
    if (tree_us := (roles["cpu_us_per_request"] or {}).get("tree")) is not None:
        closed["server_cpu_ms_per_request"] = round(tree_us / 1000, 3)  # unrounded CPU seconds, not cores
    cpu_ms = closed.get("server_cpu_ms_per_request")
    result = {"closed": closed, "roles": roles}
    result["cores_for_10k_items_per_s"] = scale_report.cores_for(scale_report.ITEMS_PER_S, cpu_ms)
    if c1:
        result["c1"] = await closed_loop(
            send, requests, concurrency=1, warmup_s=plan.c1_warmup_s, duration_s=plan.c1_duration_s
        )
    return result


def started(mode: Mode, overrides: dict, log_dir: Path, stack: contextlib.ExitStack) -> list[ServerProcess]:
    """Start the mode's servers side by side (stopped by `stack`), then wait until each is ready."""
    settings = overrides | ({} if mode.workers is None else {"workers": mode.workers})
    servers = []
    for index in range(mode.servers):
        server = ServerProcess(settings, log_dir / f"{mode.name}-{index}.log")
        stack.callback(server.stop)
        servers.append(server)
    for server in servers:
        server.wait_ready()
    return servers


async def run_mode(bundle: Bundle, workloads: list, mode: Mode, plan: ScalePlan, real: bool, log_dir: Path) -> dict:
    overrides = {"model_dir": str(bundle.model_dir), "models": [bundle.name], "log_level": "warning"}
    if plan.intra_op_threads is not None:
        overrides["intra_op_threads"] = plan.intra_op_threads
    with contextlib.ExitStack() as stack:
        try:
            servers = started(mode, overrides, log_dir, stack)
        except SystemExit as error:  # the server exited or never got ready: say so and go on
            say(f"  {mode.name}: did not start")
            return {"error": str(error)[-1500:]}
        record = {"servers": [{"ready_s": round(s.ready_s, 2), "processes": len(s.pids())} for s in servers]}
        say(f"  {mode.name}: ready, processes {[s['processes'] for s in record['servers']]}")
        path = f"/v1/models/{bundle.name}/classify?version={bundle.version}"
        ports = [server.port for server in servers]
        record["workloads"] = {}
        async with spread_target(
            plan.client, HOST, ports, path, max_connections=plan.concurrency, timeout_s=plan.http_timeout_s
        ) as (send, encode):
            for workload in workloads:
                requests = [encode(body, headers) for body, headers in workload.bodies]
                result = await load(send, requests, servers, plan, real, mode.c1)
                record["workloads"][workload.name] = result
                say(f"  {mode.name:<14} {workload.name:<11} {scale_report.progress(result)}")
        for entry, server in zip(record["servers"], servers, strict=True):
            entry |= server.memory_mb()
    return record


async def run_bundle(bundle: Bundle, kinds: list[str], plan: ScalePlan, real: bool, only, log_dir: Path) -> dict:
    workloads, skipped = scale_workloads(bundle, plan.pool, only)
    out = {"bundle": bundle.describe(), "skipped_workloads": skipped, "modes": {}}
    for mode in modes_for(kinds, plan.ns, real, "workers" in Settings.model_fields):
        if mode.skipped:
            out["modes"][mode.name] = {"skipped": mode.skipped}
            continue
        directory = log_dir / mode.name
        directory.mkdir(parents=True)
        out["modes"][mode.name] = await run_mode(bundle, workloads, mode, plan, real, directory)
    out["ratios"] = scale_report.ratios(out["modes"])
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds per phase (not for quoting)")
    parser.add_argument("--bundles", default=",".join(BUNDLES), help=f"subset of {','.join(BUNDLES)}")
    parser.add_argument("--default-bundle", type=Path, help="a model dir holding tridigits/1 (default: models/)")
    parser.add_argument("--ns", help="process counts N for front-ends-N and independent-N (default 1,2)")
    parser.add_argument(
        "--kinds", "--modes", dest="modes", default=",".join(KINDS), help=f"subset of {','.join(KINDS)}"
    )
    parser.add_argument("--workloads", default=",".join(NAMES), help=f"subset of {','.join(NAMES)}")
    parser.add_argument("--duration", type=float, help="measured seconds per phase, stand-in bundle (default 4)")
    parser.add_argument("--c1-duration", type=float, help="measured seconds of each c=1 closed loop (default 3)")
    parser.add_argument("--concurrency", type=int, help="closed-loop clients (default 32)")
    parser.add_argument("--intra-op-threads", type=int, help="FUSIONSERVE_INTRA_OP_THREADS for every server")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), help="the load generator's event loop (uvloop)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for flag, chosen, known in (
        ("--bundles", args.bundles, BUNDLES),
        ("--kinds", args.modes, KINDS),
        ("--workloads", args.workloads, NAMES),
    ):
        if unknown := set(chosen.split(",")) - set(known):
            parser.error(f"{flag}: unknown {sorted(unknown)}; expected a subset of {','.join(known)}")
    return args


def make_plan(args: argparse.Namespace) -> ScalePlan:
    plan = QUICK if args.quick else ScalePlan()
    if args.ns:
        plan = replace(plan, ns=tuple(int(n) for n in args.ns.split(",")))
    chosen = {"duration_s": args.duration, "c1_duration_s": args.c1_duration, "concurrency": args.concurrency}
    chosen |= {"intra_op_threads": args.intra_op_threads, "loop": args.loop}
    plan = replace(plan, **{key: value for key, value in chosen.items() if value is not None})
    return plan if plan.loop == "asyncio" or uvloop_available() else replace(plan, loop="asyncio")


async def run_all(args: argparse.Namespace, plan: ScalePlan, scratch: Path) -> tuple[dict, dict]:
    bundles, skipped = {}, {}
    only, kinds = args.workloads.split(","), args.modes.split(",")
    for key in args.bundles.split(","):
        real = key == "default"
        bundle = default_bundle(args.default_bundle, scratch / "default") if real else None
        if isinstance(bundle, str):
            skipped[key] = bundle
            say(f"default bundle skipped: {bundle}")
            continue
        bundle = bundle or resolve_bundle(None, None, scratch / "standin")
        say(f"bundle {key}: {bundle.name}/{bundle.version}")
        bundles[key] = await run_bundle(bundle, kinds, plan, real, only, scratch / "logs" / key)
        if real:
            bundles[key]["bundle"]["path"] = str((bundle.model_dir / "tridigits" / "1").resolve())
    return bundles, skipped


def main(argv: list[str] | None = None) -> int:
    args, began = parse_args(argv), time.perf_counter()
    plan = make_plan(args)
    os.environ.pop("FUSIONSERVE_WORKERS", None)  # each mode sets it (or, `default`, leaves it unset) itself
    results = {"command": report.command_line("bench.scale", argv), "smoke": args.quick}
    results |= {"machine": report.machine_info(), "load_average_before": report.load_average()}
    results |= {"plan": plan.as_dict(), "workers_setting": "workers" in Settings.model_fields}
    with tempfile.TemporaryDirectory(prefix="fusionserve-scale-") as scratch:
        results["bundles"], results["skipped_bundles"] = run_loop(plan.loop, run_all(args, plan, Path(scratch)))
    results["targets"] = scale_targets.targets(results["bundles"], plan.concurrency)
    results |= {"load_average_after": report.load_average(), "wall_s": round(time.perf_counter() - began, 1)}
    path = scale_report.write(results, args.out)
    say(f"wrote {args.out / 'results.json'}, {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
