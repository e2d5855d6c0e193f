"""The video bench's figures: CPU per video-minute, the server against the reference, and the tables of README.md."""

from __future__ import annotations

import json
from pathlib import Path

TARGET = 1.25  # the server's CPU per video-minute may be at most this many times the reference's
REFERENCE = "seek"  # the reference named by the target: a seek to the keyframe before each sample
DECODING_WAYS = ("seek", "seek_near", "all_decoded")  # ways that get the samples (all_frames converts every frame)
# The issue's figures for 60 s of noise (CPU s): every frame, and a seek per sample
ISSUE_NOISE = {"360p": {"all_frames": 3.6, "seek": 2.3}, "720p": {"all_frames": 12.6, "seek": 8.8}}


def per_minute(cpu_s: float, seconds: float) -> float:
    return round(cpu_s * 60.0 / seconds, 3)


def ratios(results: dict) -> dict:
    """Per motion clip: server and reference CPU s per video-minute, server/seek and server/the cheapest way."""
    found = {}
    for name, served in results["server"]["clips"].items():
        ref = results["reference"][name]
        seconds = ref["clip"]["seconds"]
        best_way = min(DECODING_WAYS, key=lambda way: ref[way]["cpu_s"])
        server = per_minute(served["cpu_s_per_clip"], seconds)
        reference, best = per_minute(ref[REFERENCE]["cpu_s"], seconds), per_minute(ref[best_way]["cpu_s"], seconds)
        found[name] = {"server_cpu_s_per_minute": server, "reference_cpu_s_per_minute": reference,
                       "server_over_reference": round(server / reference, 2), "target": TARGET,
                       "met": server / reference <= TARGET, "cheapest_way": best_way,
                       "server_over_cheapest": round(server / best, 2)}  # fmt: skip
    return found


def reference_rows(results: dict) -> list[str]:
    ways = ("seek", "seek_near", "all_decoded", "all_frames", "audio")
    lines = ["| clip | MB | Mbit/s | targets | " + " | ".join(ways) + " |", "|---" * (4 + len(ways)) + "|"]
    for name, row in results["reference"].items():
        seconds = row["clip"]["seconds"]
        cells = [f"{per_minute(row[w]['cpu_s'], seconds):.2f}" if w in row else "–" for w in ways]
        mbit = row["bytes"] * 8 / seconds / 1e6
        lines.append(
            f"| {name} | {row['bytes'] / 1e6:.1f} | {mbit:.1f} | {row['targets']} | " + " | ".join(cells) + " |"
        )
    return lines


def decoded_rows(results: dict) -> list[str]:
    lines = ["| clip | " + " | ".join(f"{w} decoded" for w in DECODING_WAYS) + " |", "|---" * 4 + "|"]
    for name, row in results["reference"].items():
        cells = [str(row[w]["frames_decoded"]) if w in row else "–" for w in DECODING_WAYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def noise_cell(row: dict, way: str) -> str:
    """CPU s per video-minute, with the issue's figure beside it (it is for 60 s of noise at that size)."""
    issue = ISSUE_NOISE.get(row["clip"]["resolution"], {})
    quoted = f" ({issue[way]:.1f})" if way in issue else ""
    return f"{per_minute(row[way]['cpu_s'], row['clip']['seconds']):.2f}{quoted}"


def noise_rows(results: dict) -> list[str]:
    lines = ["| clip | Mbit/s | all_frames (issue) | seek (issue) | seek_near |", "|---|---|---|---|---|"]
    for name, row in results["reference"].items():
        if row["clip"]["content"] == "noise":
            mbit = row["bytes"] * 8 / row["clip"]["seconds"] / 1e6
            cells = " | ".join(noise_cell(row, way) for way in ("all_frames", "seek", "seek_near"))
            lines.append(f"| {name} | {mbit:.0f} | {cells} |")
    return lines


def server_rows(results: dict) -> list[str]:
    lines = ["| clip | server CPU s/min | reference (seek) s/min | server/seek | target | server/cheapest (way) |"
             " Server-Timing ms (probe, frames, audio) |", "|---" * 7 + "|"]  # fmt: skip
    for name, r in results.get("ratios", {}).items():
        timing = results["server"]["clips"][name]["server_timing_ms"]
        stages = ", ".join(f"{v:.0f}" for v in timing.values())
        lines.append(f"| {name} | {r['server_cpu_s_per_minute']:.2f} | {r['reference_cpu_s_per_minute']:.2f} | "
                     f"{r['server_over_reference']:.2f} | ≤ {r['target']} {'met' if r['met'] else 'NOT met'} | "
                     f"{r['server_over_cheapest']:.2f} ({r['cheapest_way']}) | {stages} |")  # fmt: skip
    return lines


def loop_rows(results: dict) -> list[str]:
    lines = ["| clients | req/s | server CPU s/request | server cores | client cores | ok | failed |", "|---" * 7 + "|"]
    for loop in results.get("server", {}).get("loops", []):
        cells = [loop[k] for k in ("server_cpu_s_per_request", "server_cores", "client_cores", "ok", "failed")]
        lines.append(f"| {loop['clients']} | {loop['requests_per_s']:.2f} | " + " | ".join(map(str, cells)) + " |")
    return lines


def markdown(results: dict) -> str:
    machine = results["machine"]
    head = [f"# Video bench{' (QUICK: a smoke run, not for quoting)' if results['quick'] else ''}", "",
            f"Command: `{results['command']}`", "",
            f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores; commit {machine['git_commit']}"
            f"{' (dirty tree)' if machine['git_dirty'] else ''}; {machine['date']}; load average before "
            f"{results['load_average_before']}, after {results['load_average_after']}; {results['wall_s']} s.", "",
            "What each way and column means: docs/benchmarks.md, \"Video\".", "",
            "## PyAV reference, CPU s per video-minute (all threads)", ""]  # fmt: skip
    body = [*reference_rows(results), "", "Frames decoded per clip:", "", *decoded_rows(results)]
    if len(noise := noise_rows(results)) > 2:  # a run without noise clips has no such section
        body += ["", "## Noise (the worst case) against the issue's figures, CPU s per video-minute", "", *noise]
    if "server" in results:
        loop = results["server"]["loop_clip"]
        title = f"{loop['seconds']:g} s {loop['resolution']} motion clip ({loop['bytes'] / 1e6:.1f} MB)"
        body += ["", "## The server, one request per clip at 1 frame/s (after one warm-up request)", ""]
        body += [*server_rows(results), "", f"## Throughput on a {title}, closed loop", "", *loop_rows(results)]
    return "\n".join(head + body) + "\n"


def write(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "README.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    return paths
