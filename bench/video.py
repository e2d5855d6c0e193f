"""`python -m bench.video` (= `make bench-video`): what a video costs the server against plain PyAV, per video-minute.

Phases: clips (bench/video_clips.py, written once into --cache) → the PyAV reference on each clip
(bench/video_reference.py) → a real server on a video bundle (bench/video_server.py) answering each whole clip at
1 frame/s (server CPU per clip, the same clips, the same run, so the ratio is of one machine's one moment) → requests/s
at c=1 and c=8 on a shorter clip. Writes results.json and README.md (with the command) to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench import video_server
from bench.loadgen import say
from bench.report import command_line, load_average, machine_info
from bench.video_clips import ClipSpec, clip
from bench.video_reference import measure
from bench.video_report import ratios, write

REPO = Path(__file__).resolve().parent.parent
MOTION_WAYS = ["seek", "seek_near", "all_frames", "all_decoded", "audio"]
NOISE_WAYS = ["seek", "seek_near", "all_frames"]  # the worst case: its all-frames and seek figures


@dataclass(frozen=True)
class Plan:
    seconds: float = 60.0
    resolutions: tuple[str, ...] = ("360p", "720p", "1080p")
    noise: tuple[str, ...] = ("360p", "720p")
    # noise runs at 37 Mbit/s at 360p (CRF 21): 60 s of 720p would be a 1 GB file; figures are per video-minute
    noise_seconds: float = 20.0
    server_repeats: int = 2  # requests per clip after the warm-up one
    loop_clip: ClipSpec = ClipSpec("720p", "motion", 10.0)  # the throughput clip: shorter, so c=8 turns over
    loop_clients: tuple[int, ...] = (1, 8)
    loop_seconds: float = 8.0


QUICK = Plan(seconds=10.0, resolutions=("360p", "720p"), noise=("360p",), noise_seconds=4.0, server_repeats=1,
             loop_clip=ClipSpec("360p", "motion", 4.0), loop_seconds=3.0)  # fmt: skip


def clips(plan: Plan, cache: Path) -> dict[str, tuple[ClipSpec, Path]]:
    specs = [ClipSpec(r, "motion", plan.seconds) for r in plan.resolutions]
    specs += [ClipSpec(r, "noise", min(plan.seconds, plan.noise_seconds)) for r in plan.noise]
    found = {}
    for spec in specs:
        started = time.perf_counter()
        found[spec.name] = (spec, clip(spec, cache))
        if (spent := time.perf_counter() - started) > 1:
            say(f"wrote {spec.name} in {spent:.0f} s")
    return found


def reference(found: dict[str, tuple[ClipSpec, Path]]) -> dict:
    rows = {}
    for name, (spec, path) in found.items():
        say(f"reference: {name} …")
        ways = MOTION_WAYS if spec.content == "motion" else NOISE_WAYS
        rows[name] = {"clip": spec.describe(), "bytes": path.stat().st_size, **measure(path, ways)}
    return rows


def served(plan: Plan, found: dict, cache: Path, scratch: Path) -> dict:
    model_dir = scratch / "models"
    video_server.build(model_dir)
    loop_path = clip(plan.loop_clip, cache)
    with video_server.start(model_dir, scratch / "server.log") as server:
        result = {"ready_s": round(server.ready_s, 1), "clips": {}, "loops": []}
        for name, (spec, path) in found.items():
            if spec.content == "motion":
                say(f"server: {name} ×{plan.server_repeats} …")
                result["clips"][name] = video_server.cpu_per_clip(server, path.read_bytes(), plan.server_repeats)
        body = loop_path.read_bytes()
        for clients in plan.loop_clients:
            say(f"server: {plan.loop_clip.name} at c={clients} for {plan.loop_seconds:g} s …")
            loop = video_server.Loop(clients, plan.loop_seconds)
            result["loops"].append(asyncio.run(video_server.closed_loop(server.url, body, loop, server)))
        result["loop_clip"] = plan.loop_clip.describe() | {"bytes": len(body)}
        result["memory_mb"] = server.memory_mb()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s clips, 360p/720p, short loops: a smoke run")
    parser.add_argument("--seconds", type=float, help="each clip's length (default 60)")
    parser.add_argument("--resolutions", help="motion clips, e.g. 360p,720p,1080p")
    parser.add_argument("--noise", help="noise clips, e.g. 360p,720p ('' for none)")
    parser.add_argument("--no-server", action="store_true", help="only the clips and the reference")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench-video", help="where clips are kept")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "video")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes = {"seconds": args.seconds,
               "resolutions": tuple(args.resolutions.split(",")) if args.resolutions else None,
               "noise": tuple(r for r in args.noise.split(",") if r) if args.noise is not None else None}  # fmt: skip
    return replace(plan, **{k: v for k, v in changes.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan, started = make_plan(args), time.perf_counter()
    results = {"command": command_line("bench.video", argv), "machine": machine_info(), "quick": args.quick,
               "load_average_before": load_average()}  # fmt: skip
    found = clips(plan, args.cache)
    results["reference"] = reference(found)
    if not args.no_server:
        with tempfile.TemporaryDirectory(prefix="fusionserve-bench-video-") as scratch:
            results["server"] = served(plan, found, args.cache, Path(scratch))
        results["server"]["bundle"] = {"video": video_server.VIDEO.model_dump(), "image_size": 224, "dim": 256}
        results["ratios"] = ratios(results)
    results |= {"load_average_after": load_average(), "wall_s": round(time.perf_counter() - started, 1)}
    for path in write(results, args.out):
        say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
