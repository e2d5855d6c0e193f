"""One training run across processes: torchrun's environment → a process group (gloo on CPU, nccl on CUDA).

`python -m training train` alone is world size 1: no process group, every helper here a no-op, results exactly
as a single process gives them. Under `torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m
training train …` each rank joins the group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

Collectives time out (FUSIONSERVE_DIST_TIMEOUT_S, default 1800 s) so that a rank that dies never leaves the
others waiting for ever; torchrun's agent also stops the other ranks when one exits non-zero.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

TIMEOUT_ENV = "FUSIONSERVE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0  # long enough for rank 0 to extract features while the others wait at the barrier


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only rank that writes files (checkpoints, history.json, curves, run record)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the job, from torchrun's environment (world size 1 without it)."""
    env = os.environ
    return World(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


def timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def setup(device) -> World:
    """Join torchrun's process group once (a no-op at world size 1 or when already joined)."""
    import torch.distributed as dist

    here = world()
    if here.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            import torch

            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timeout())
    return here


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()


def broadcast_flag(value: bool, device) -> bool:
    """Rank 0's decision on every rank (early stopping must stop every rank at the same epoch)."""
    import torch
    import torch.distributed as dist

    if not active():
        return value
    flag = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item() > 0.5)


def mean_over_ranks(values: dict[str, float], device) -> dict[str, float]:
    """Each rank's epoch averages → their mean (history's train_* columns describe the whole batch)."""
    import torch
    import torch.distributed as dist

    if not active() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, tensor.tolist(), strict=True)}


def wrap(model, device):
    """DistributedDataParallel around the model when there is a group (gradients averaged over ranks)."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # modality dropout leaves a modality's head without gradient in some batches
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def from_main(produce):
    """produce() run on rank 0, its value (or its UserError, raised on every rank) sent to all ranks: a resume
    reads rank 0's last.pt even where the other machines do not share its disk."""
    import torch.distributed as dist

    from training.errors import UserError

    if not active():
        return produce()
    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", produce())
        except UserError as error:
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value
