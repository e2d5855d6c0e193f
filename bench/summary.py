"""Per-workload results, the headline ratios, and the caveats a reader needs to interpret them."""

from __future__ import annotations

BUILT_NOTE = (
    "The bundle is the bench's random-weight test bundle: real ONNX graphs fed realistic tensor shapes "
    "(224 px images, 80-mel audio, ≤128-token text), but the graphs themselves are cheap (mean-pooling + small "
    "MLPs). Their 'compute' is mostly onnxruntime per-call overhead, which batching does amortise (text-only), "
    "while image and all-three items are dominated by decoding (PNG, resampling, log-mel) in the preprocessing "
    "pool, which batching does not touch. A real encoder bundle (--model-dir) would show larger batching gains."
)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def combine(ceiling: dict, on: dict, off: dict) -> dict:
    workloads = {}
    for name, measured in ceiling.items():
        server, server_off = on["workloads"][name], off["workloads"][name]
        workloads[name] = {
            "profile": measured["profile"],
            "ceiling": measured["closed"],
            "server": server["closed"],
            "server_batching_off": server_off["closed"],
            "open_loop": server["open_loop"],
            "ratios": {
                "server_over_ceiling": ratio(server["closed"]["throughput"], measured["closed"]["throughput"]),
                "batching_on_over_off": ratio(server["closed"]["throughput"], server_off["closed"]["throughput"]),
            },
        }
    return workloads


def notes(results: dict, skipped: list[str]) -> list[str]:
    out, workloads = [], results["workloads"]
    if results["bundle"]["source"].startswith("built"):
        out.append(BUILT_NOTE)
    light = [name for name, w in workloads.items() if w["profile"]["compute_share_batch1"] < 0.25]
    if light:
        out.append(
            f"For {', '.join(light)}, model compute is under 25% of one item's single-threaded work (last table): "
            "their ratios mostly measure preprocessing and per-request overhead (HTTP, multipart, JSON, queues)."
        )
    out += overhead_notes(workloads, results["settings"]["intra_op_threads"])
    client = max((w["server"].get("client_cpu_cores", 0) for w in workloads.values()), default=0)
    out.append(
        f"The load generator ({results['plan']['client']} client, in the bench process) used up to {client:.2f} "
        f"cores during the closed-loop server phases, on the same {results['machine']['usable_cores']}-core machine "
        "as the server; the ceiling has no client, so server/ceiling includes the client's share of the CPU."
    )
    out += error_notes(workloads)
    lag = max((p.get("send_lag_p99_ms", 0) for w in workloads.values() for p in w["open_loop"]), default=0)
    if lag > 10:
        out.append(f"The open-loop client lagged its schedule by up to {lag:.0f} ms (p99): the machine was CPU-bound.")
    load = results["load_average_before"]
    if load and load[0] > 0.5 * results["machine"]["usable_cores"]:
        out.append(f"The machine was busy before the run (load average {load}): expect noisy numbers.")
    if skipped:
        out.append(f"Skipped workloads (the bundle lacks a modality): {', '.join(skipped)}.")
    return out


def error_notes(workloads: dict) -> list[str]:
    """Name every phase that saw non-200 answers, so 429s and 5xx never hide behind a good p99."""
    out = []
    for name, w in workloads.items():
        phases = {"ceiling": w["ceiling"], "server": w["server"], "batching off": w["server_batching_off"]}
        phases |= {f"open {p['fraction_of_capacity']:.2f}x": p for p in w["open_loop"]}
        for phase, summary in phases.items():
            if summary["error_rate"]:
                counts = {k: v for k, v in summary["status_counts"].items() if k != "200"}
                out.append(f"{name}, {phase}: {summary['error_rate']:.1%} of requests failed {counts}.")
    return out


def overhead_notes(workloads: dict, intra_op_threads: int) -> list[str]:
    """Under load the data plane can burn far more CPU per item than the item's own work: say so."""
    inflated = {}
    for name, w in workloads.items():
        alone = w["profile"]["preprocess_ms"] + w["profile"]["compute_batch1_ms"]
        loaded = w["ceiling"].get("cpu_ms_per_item")
        if loaded and alone and loaded > 1.5 * alone:
            inflated[name] = round(loaded / alone, 1)
    if not inflated:
        return []
    note = f"Under load the in-process data plane spent {inflated} times the single-threaded CPU per item"
    if intra_op_threads == 0:  # onnxruntime's default: a spinning intra-op pool per session
        return [
            f"{note}: likely thread contention plus onnxruntime's intra-op threads spin-waiting between calls "
            "(one pool per session with intra_op_threads=0); compare a run with --set intra_op_threads=1."
        ]
    return [f"{note}: thread contention (GIL, preprocessing and onnxruntime threads on few cores)."]
