"""last.pt: everything `--resume` needs to continue a run from its last finished epoch, bit for bit on CPU.

Written by rank 0 at the end of every epoch, atomically (a temporary file, then os.replace), so a run killed at
any moment leaves either the previous epoch's last.pt or this one's. Resuming refuses a last.pt written for
other data or another config (the run record and config are stored alongside).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from training.errors import CheckpointError

LAST = "last.pt"
# what may differ between the interrupted command and the resuming one without changing the result
_FREE = {"resume", "progress", "threads", "device"}


def fingerprint(cfg, run: dict) -> dict:
    config = {k: v for k, v in cfg.as_dict().items() if k not in _FREE}
    return {"config": config, "run": run}


def save_last(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic on one filesystem: readers see the old or the new file, never half of one


def load_last(path: Path, expected: dict) -> dict | None:
    """last.pt's state when it belongs to this run (None when there is none); a mismatch is refused."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    stored = state.get("fingerprint", {})
    for key in ("run", "config"):
        if stored.get(key) != expected[key]:
            changed = _differences(stored.get(key) or {}, expected[key])
            raise CheckpointError(f"cannot resume from {path}: it was written for another {key} ({changed}); "
                                  "drop --resume to start again, or use another --name / --out-dir")  # fmt: skip
    return state


def _differences(old: dict, new: dict) -> str:
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys[:4]) or "unknown"


def capture(loop, epoch: int, history: list, best: tuple, stopped: bool, expected: dict) -> dict:
    """The state after `epoch`: weights, optimizer, schedule, loss scaler, both random streams, history, best."""
    state = {"fingerprint": expected, "epoch": epoch, "history": history, "best": best, "stopped": stopped}
    state |= {"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict()}
    state |= {"schedule": loop.schedule.state_dict(), "scaler": loop.scaler.state_dict()}
    state |= {"generator": loop.generator.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and loop.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(loop.device)
    return state


def restore(loop, state: dict) -> tuple[int, list, tuple, bool]:
    """Put `state` back into the loop's objects → (next epoch, history, best, stopped)."""
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.schedule.load_state_dict(state["schedule"])
    loop.scaler.load_state_dict(state["scaler"])
    loop.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and loop.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], loop.device)
    return state["epoch"] + 1, state["history"], tuple(state["best"]), state["stopped"]
