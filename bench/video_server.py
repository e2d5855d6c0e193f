"""The video bench's server side: a real `python -m service serve` on a video bundle, answering whole clips.

The bundle is tests.bundles' (random weights) with the bench's realistic sizes (bench/workloads.py BUILT_BUNDLE:
224 px frames, 80 mels, dim 256) and image + audio + a temporal pool, sampling 1 frame/s in 4 s segments of at most
8 frames (the manifest's VideoPreprocess defaults), so the server keeps a frame at the same times the reference
decodes (bench/video_reference.py). CPU is the server's whole process tree (/proc), read around the requests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.server import ServerProcess
from bench.workloads import BUILT_BUNDLE
from service.manifest import VideoPreprocess
from tests.bundles import build_bundle

MODEL = "bench-video"
VIDEO = VideoPreprocess(frames_per_second=1.0, max_frames_per_segment=8, segment_s=4.0, max_seconds=600.0)
UPLOAD_BYTES = 128 * 1024 * 1024  # a 60 s 1080p clip is ~25 MB, above the default 20 MB
TIMEOUT_S = 300.0
STAGES = ("video-probe", "video-frames", "video-audio")  # Server-Timing's decode stages


def build(root: Path) -> Path:
    sizes = {k: v for k, v in BUILT_BUNDLE.items() if k != "text_max_length"}
    return build_bundle(root, MODEL, "1", modalities=("image", "audio", "video"), labels=tuple("0123456789"),
                        golden=False, video=VIDEO, **sizes)  # fmt: skip


def start(model_dir: Path, log: Path) -> ServerProcess:
    overrides = {"model_dir": str(model_dir), "max_upload_bytes": UPLOAD_BYTES, "default_deadline_ms": TIMEOUT_S * 1000,
                 "max_video_seconds": VIDEO.max_seconds}  # fmt: skip
    return ServerProcess(overrides, log)


def server_timing(header: str) -> dict[str, float]:
    """`name;dur=ms, …` → {name: ms} (Server-Timing, RFC-style, as the server writes it)."""
    found = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur" and name:
                found[name] = float(value)
    return found


def classify(client: httpx.Client, url: str, clip: bytes) -> dict[str, float]:
    """One clip's classify; its Server-Timing decode stages (ms). A refusal ends the bench with the server's word."""
    files = {"video": ("clip.mp4", clip, "video/mp4")}
    response = client.post(f"{url}/v1/models/{MODEL}/classify", files=files, timeout=TIMEOUT_S)
    if response.status_code != 200:
        raise SystemExit(f"bench: the server answered {response.status_code}: {response.text[:500]}")
    return {k: v for k, v in server_timing(response.headers.get("server-timing", "")).items() if k in STAGES}


def cpu_per_clip(server: ServerProcess, clip: bytes, repeats: int) -> dict:
    """Server CPU seconds per clip (its process tree, around `repeats` sequential requests after one warm-up)."""
    with httpx.Client(trust_env=False) as client:
        classify(client, server.url, clip)  # the first video request pays lazy imports and allocations
        cpu, wall, stages = server.cpu_seconds(), time.perf_counter(), []
        for _ in range(repeats):
            stages.append(classify(client, server.url, clip))
        cpu, wall = server.cpu_seconds() - cpu, time.perf_counter() - wall
    mean = {k: round(sum(s.get(k, 0.0) for s in stages) / len(stages), 1) for k in STAGES}
    return {"requests": repeats, "cpu_s_per_clip": round(cpu / repeats, 3), "wall_s_per_clip": round(wall / repeats, 3),
            "server_timing_ms": mean}  # fmt: skip


@dataclass(frozen=True)
class Loop:
    clients: int
    seconds: float
    warmup_s: float = 2.0


async def closed_loop(url: str, clip: bytes, loop: Loop, server: ServerProcess) -> dict:
    """`clients` requests in flight for `seconds` (after a warm-up); 200s and server CPU inside the window."""
    done, failed, marks = 0, 0, {}
    limits = httpx.Limits(max_connections=loop.clients)
    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S, trust_env=False) as client:
        start = time.perf_counter() + loop.warmup_s
        stop = start + loop.seconds

        async def worker() -> None:
            nonlocal done, failed
            files = {"video": ("clip.mp4", clip, "video/mp4")}
            while time.perf_counter() < stop:
                response = await client.post(f"{url}/v1/models/{MODEL}/classify", files=files)
                inside = start <= time.perf_counter() <= stop
                done += inside and response.status_code == 200
                failed += inside and response.status_code != 200

        async def meter() -> None:
            await asyncio.sleep(loop.warmup_s)
            marks["start"] = (server.cpu_seconds(), time.process_time())
            await asyncio.sleep(loop.seconds)
            marks["stop"] = (server.cpu_seconds(), time.process_time())

        await asyncio.gather(meter(), *(worker() for _ in range(loop.clients)))
    (server_start, client_start), (server_stop, client_stop) = marks["start"], marks["stop"]
    return {"clients": loop.clients, "seconds": loop.seconds, "ok": done, "failed": failed,
            "requests_per_s": round(done / loop.seconds, 2),
            "server_cpu_s_per_request": round((server_stop - server_start) / done, 3) if done else None,
            "server_cores": round((server_stop - server_start) / loop.seconds, 2),
            "client_cores": round((client_stop - client_start) / loop.seconds, 2)}  # fmt: skip
