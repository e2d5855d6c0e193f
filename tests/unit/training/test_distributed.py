"""torchrun / DDP on CPU (gloo): 2 ranks train the model one process trains (within a stated tolerance), end with
identical weights, only rank 0 writes files, a resume continues on every rank, a killed rank fails the job fast.
Plus the sharding rule itself, without processes: the ranks' shares of a batch partition the global batch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training import distributed
from training.device import grad_scaler
from training.train import _batch, _Loop, predict, train

from .ddp_worker import tiny_data
from .test_train_export import config

ROOT = Path(__file__).resolve().parents[3]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
WORKER = ["-m", "tests.unit.training.ddp_worker"]
# 2 ranks against 1 process: each rank's InfoNCE sees its half of the batch (fewer negatives), so the runs differ a
# little; measured here: the same best val accuracy, 0.97 of test predictions agree
ACCURACY_TOLERANCE = 0.05
AGREEMENT = 0.9


def _torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = os.environ | {distributed.TIMEOUT_ENV: "60"}
    run = subprocess.run([*TORCHRUN, *WORKER, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _digests(output: str) -> dict[int, str]:
    return {int(r): d for r, d in re.findall(r"rank (\d+): state_dict sha256 ([0-9a-f]{64})", output)}


def test_ranks_share_out_each_batch_and_draw_the_same_randomness():
    split, cfg = tiny_data().splits["train"], config(modality_dropout=0.5)
    rows = torch.randperm(len(split))[:31]  # odd: the ranks' shares differ in size

    def share(rank: int, size: int):
        loop = _Loop(None, None, None, None, grad_scaler(torch.device("cpu"), "fp32"),
                     torch.Generator().manual_seed(3), torch.device("cpu"), distributed.World(rank, size))  # fmt: skip
        return _batch(split, rows, cfg, loop)

    whole, shares = share(0, 1), [share(r, 2) for r in (0, 1)]
    assert [len(s[2]) for s in shares] == [16, 15] and sum(s[4] for s in shares) == pytest.approx(2.0)
    for rank, (features, present, labels, dropped, _) in enumerate(shares):
        mine = torch.arange(rank, len(rows), 2)  # rows rank, rank + 2, …: the same dropout as one process
        assert torch.equal(labels, whole[2][mine]) and torch.equal(dropped, whole[3][mine])
        assert torch.equal(present, whole[1][mine])
        assert all(torch.equal(features[m], whole[0][m][mine]) for m in features)


def test_world_of_one_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.World(0, 1, 0) and distributed.world().main
    assert not distributed.active() and distributed.broadcast_flag(True, torch.device("cpu"))
    assert distributed.mean_over_ranks({"a": 1.5}, torch.device("cpu")) == {"a": 1.5}


def test_build_default_is_refused_under_torchrun(monkeypatch, capsys):
    from training.__main__ import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["build-default", "--epochs", "1"]) == 2
    assert "build-default runs as one process" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ranks_match_one_process_and_only_rank_0_writes(tmp_path):
    run = _torchrun(str(tmp_path), "6")
    digests = _digests(run.stdout)
    assert set(digests) == {0, 1} and digests[0] == digests[1]  # DDP kept the ranks' weights identical
    assert not (tmp_path / "rank1").exists()
    assert {p.name for p in (tmp_path / "rank0").iterdir()} == {"model.pt", "last.pt", "history.json",
                                                               "training_curves.png"}  # fmt: skip
    from training.model.fused import load_checkpoint

    two, _ = load_checkpoint(tmp_path / "rank0" / "model.pt")
    history = json.loads((tmp_path / "rank0" / "history.json").read_text())
    one = train(config(epochs=6, patience=10**6, device="cpu"), tiny_data())
    assert len(history) == 6
    assert abs(max(r["val_accuracy"] for r in history) - one.best_val_accuracy) <= ACCURACY_TOLERANCE
    test = tiny_data().splits["test"]
    a, b = predict(one.model, test)[0].argmax(1), predict(two, test)[0].argmax(1)
    assert (a == b).float().mean() >= AGREEMENT
    assert abs((a == test.labels).float().mean() - (b == test.labels).float().mean()) <= ACCURACY_TOLERANCE
    # a resume under torchrun: rank 0 reads last.pt and sends it to rank 1 (whose directory has none)
    resumed = _torchrun(str(tmp_path), "6", "true")
    assert "epoch 1 done" not in resumed.stdout and _digests(resumed.stdout) == digests


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_without_a_hang(tmp_path):
    env = os.environ | {distributed.TIMEOUT_ENV: "30"}
    job = subprocess.Popen([*TORCHRUN, "--monitor-interval", "0.5", *WORKER, str(tmp_path), "100000"], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for line in job.stdout:  # an event, not a sleep: rank 1 says it finished an epoch
            if found := re.match(r"rank 1 pid (\d+): epoch 1 done", line):
                break
        assert found, "rank 1 never finished an epoch"
        killed = time.monotonic()
        os.kill(int(found.group(1)), signal.SIGKILL)
        rest = job.communicate(timeout=90)[0]
        assert job.returncode != 0
        assert time.monotonic() - killed < 90
        assert re.search(r"ChildFailedError|rank\s*:\s*1|local_rank: 1", rest), rest[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
