"""bench/scale.py's targets (docs/benchmarks.md, "Scaling across processes"), each with its value from a run: met,
not met, not measured (None), or, for the figures compared against an older commit rather than a threshold,
reported."""

from __future__ import annotations

from bench.scale_report import BASE, c1_p50, closed, ratio, role_us

# stand-in bundle: (workload, front-ends-2 / one-process req/s at least) and (workload, CPU ms per request at most)
SPEEDUPS = (("text-only", 1.6), ("image-only", 1.25))
CPU_MS = (("text-only", 0.40), ("image-only", 4.0), ("jpeg-only", 2.0))
CPU_MODES = ("one-process", "front-ends-2")
SAME_AS_ONE = 0.97  # default bundle: the default setting keeps ≥ 97 % of one process's req/s and c=1 p50
ENGINE_TEXT_US = 60.0  # stand-in text-json: the engine's CPU per request
SPLIT_CPU = 1.15  # front-ends-1's whole tree CPU per request ÷ one process's, at most
SPLIT_C1 = 1.3  # front-ends-1's c=1 p50 ÷ one process's, at most
SPLIT = "front-ends-1"
HEADLINE = ("text-json", "jpeg-only", "all-three")  # text, JPEG and all three modalities
BUNDLE_LABELS = {"standin": "stand-in", "default": "default bundle"}


def check(label: str, value: float | None, op: str, threshold: float) -> dict:
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return {"target": label, "value": value, "op": op, "threshold": threshold, "met": met}


def reported(label: str, value: float | None) -> dict:
    """A figure with no threshold here: the lead compares it with an older commit's."""
    return {"target": label, "value": value, "op": None, "threshold": None, "met": None}


def targets(bundles: dict, concurrency: int = 32) -> list[dict]:
    """Every target, stand-in rows first; a bundle that was not run has no rows."""
    rows = []
    if (standin := bundles.get("standin")) is not None:
        rows += standin_targets(standin)
        rows += engine_targets(standin, concurrency)
    if (default := bundles.get("default")) is not None:
        rows += default_targets(default, concurrency)
    for key, bundle in bundles.items():
        rows += split_targets(BUNDLE_LABELS.get(key, key), bundle["modes"])
    return rows


def standin_targets(standin: dict) -> list[dict]:
    rows, modes = [], standin["modes"]
    for workload, least in SPEEDUPS:
        value = standin["ratios"].get(workload, {}).get("front-ends-2", {}).get("req_s_vs_one_process")
        rows.append(check(f"stand-in {workload}: front-ends-2 / one-process req/s", value, ">=", least))
    for workload, most in CPU_MS:
        for mode in CPU_MODES:
            value = closed(modes, mode, workload).get("server_cpu_ms_per_request")
            rows.append(check(f"stand-in {workload}: server CPU ms/request, {mode}", value, "<=", most))
    return rows


def engine_targets(standin: dict, concurrency: int) -> list[dict]:
    """The engine's CPU per text request in each front-ends-N mode that ran (front-ends-1 even when it did not)."""
    modes = standin["modes"]
    split_modes = [m for m in modes if m.startswith("front-ends-")] or [SPLIT]
    label = "stand-in text-json, {mode}, c={c}: engine CPU µs/request"
    return [
        check(
            label.format(mode=mode, c=concurrency), role_us(modes, mode, "text-json", "engines"), "<=", ENGINE_TEXT_US
        )
        for mode in split_modes
    ]


def split_targets(name: str, modes: dict) -> list[dict]:
    """front-ends-1 against one process: whole-tree CPU per request and c=1 p50, on text, JPEG and all three."""
    rows = []
    for workload in HEADLINE:
        value = ratio(role_us(modes, SPLIT, workload, "tree"), role_us(modes, BASE, workload, "tree"))
        rows.append(check(f"{name} {workload}: {SPLIT} / one-process CPU per request", value, "<=", SPLIT_CPU))
    for workload in HEADLINE:
        value = ratio(c1_p50(modes, SPLIT, workload), c1_p50(modes, BASE, workload))
        rows.append(check(f"{name} {workload}: {SPLIT} / one-process c=1 p50", value, "<=", SPLIT_C1))
    return rows


def default_targets(default: dict, concurrency: int) -> list[dict]:
    rows, modes = [], default["modes"]
    for workload in modes.get(BASE, {}).get("workloads", {}):
        value = default["ratios"].get(workload, {}).get("default", {}).get("req_s_vs_one_process")
        label = f"default bundle {workload}: default setting / one-process req/s"
        rows.append(check(label, value, ">=", SAME_AS_ONE))
        value = ratio(c1_p50(modes, BASE, workload), c1_p50(modes, "default", workload))
        label = f"default bundle {workload}: one-process / default setting c=1 p50"
        rows.append(check(label, value, ">=", SAME_AS_ONE))
    for workload in modes.get("default", {}).get("workloads", {}):
        value = closed(modes, "default", workload).get("throughput")
        rows.append(reported(f"default bundle {workload}, default setting: c={concurrency} req/s", value))
        rows.append(
            reported(f"default bundle {workload}, default setting: c=1 p50 ms", c1_p50(modes, "default", workload))
        )
    return rows
