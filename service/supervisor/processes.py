"""How many processes `fusionserve serve` runs (FUSIONSERVE_WORKERS, FUSIONSERVE_ENGINES; docs/architecture.md
"Processes").

`auto` decides from the machine: on a CPU-only box the encoders are the cost and onnxruntime already uses
every core, so one process serves best (bench/results/scale: the split's hop costs CPU the encoders need);
with a visible GPU the per-request work is the cost, so front-ends take the cores — one per core left after
the engines (the container's CPU limit counts, not the node's cores), at most MAX_AUTO_FRONT_ENDS — and one
engine per GPU, so two GPUs are both used.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings

MAX_AUTO_FRONT_ENDS = 8  # vLLM's api-server-count gains flatten past a handful of front-ends


@dataclass(frozen=True)
class ProcessPlan:
    front_ends: int  # 0: one process does everything (no engine process)
    engines: int
    gpus: int  # visible GPUs (engine i uses GPU i mod gpus)

    @property
    def split(self) -> bool:
        return self.front_ends > 0


def visible_gpus(providers: str) -> int:
    """NVIDIA GPUs onnxruntime's CUDA EP could use here (0 with providers=cpu or a CPU-only onnxruntime)."""
    if providers == "cpu":
        return 0
    import onnxruntime as ort  # the supervisor itself never runs a session

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return len([d for d in listed.split(",") if d.strip() and not d.strip().startswith("-")])
    if shutil.which("nvidia-smi") is None:
        return 1  # the EP is there; say one rather than guess more
    try:
        lines = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 1
    return max(1, sum(1 for line in lines.splitlines() if line.startswith("GPU ")))


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's CPU
    limit, which os.cpu_count() does not see: it counts the node's cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, math.ceil(int(quota) / int(period))))


def process_plan(settings: Settings, cores: int | None = None) -> ProcessPlan:
    gpus = visible_gpus(settings.providers)
    cores = cores or available_cores()
    engines = settings.engines if settings.engines != "auto" else max(1, gpus)
    if settings.workers != "auto":
        front_ends = settings.workers
    else:
        front_ends = 0 if gpus == 0 else max(1, min(cores - engines, MAX_AUTO_FRONT_ENDS))
    return ProcessPlan(front_ends, engines if front_ends else 0, gpus)
