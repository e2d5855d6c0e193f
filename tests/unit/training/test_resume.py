"""`--resume`: a run interrupted after an epoch and resumed ends exactly where an uninterrupted run ends (history
and weights, bit for bit on CPU); last.pt is written atomically each epoch; a last.pt of another run is refused."""

from __future__ import annotations

import json

import pytest
import torch

from training.checkpointing import LAST
from training.errors import CheckpointError
from training.model.fused import load_checkpoint
from training.train import train

from .test_train_export import config, data  # noqa: F401 (the tiny synthetic data fixture)


class Interrupted(Exception):
    pass


def _stop_after(stop: int):
    def on_epoch(epoch: int, row: dict) -> None:
        if epoch == stop:
            raise Interrupted  # as if the job were killed right after this epoch's last.pt

    return on_epoch


def _weights(path):
    return load_checkpoint(path)[0].state_dict()


def test_resumed_run_equals_an_uninterrupted_one(data, tmp_path):  # noqa: F811
    cfg = config(epochs=4, device="cpu", modality_dropout=0.3)
    whole = train(cfg, data, out_dir=tmp_path / "whole")
    with pytest.raises(Interrupted):
        train(cfg, data, out_dir=tmp_path / "cut", on_epoch=_stop_after(2))
    assert not (tmp_path / "cut" / "model.pt").exists() and (tmp_path / "cut" / LAST).is_file()
    assert torch.load(tmp_path / "cut" / LAST, weights_only=False)["epoch"] == 2
    resumed_epochs = []
    resumed = train(cfg.__class__(**cfg.as_dict() | {"resume": True}), data, out_dir=tmp_path / "cut",
                    on_epoch=lambda epoch, row: resumed_epochs.append(epoch))  # fmt: skip
    assert resumed_epochs == [3, 4]  # continued, not started again
    assert resumed.history == whole.history
    a, b = _weights(tmp_path / "whole" / "model.pt"), _weights(tmp_path / "cut" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "history.json").read_text()) == json.loads(
        (tmp_path / "whole" / "history.json").read_text()
    )
    assert not [p.name for p in (tmp_path / "cut").iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_another_config(data, tmp_path):  # noqa: F811
    with pytest.raises(Interrupted):
        train(config(epochs=3, device="cpu"), data, out_dir=tmp_path, on_epoch=_stop_after(1))
    with pytest.raises(CheckpointError, match=r"another config \(lr: 0.002 then, 0.01 now"):
        train(config(epochs=3, device="cpu", lr=0.01, resume=True), data, out_dir=tmp_path)


def test_resume_without_last_starts_afresh_and_a_finished_run_stays_finished(data, tmp_path):  # noqa: F811
    fresh = train(config(epochs=40, patience=2, lr=1e-5, device="cpu", resume=True), data, out_dir=tmp_path)
    assert len(fresh.history) < 40  # stopped early
    again = []
    resumed = train(config(epochs=40, patience=2, lr=1e-5, device="cpu", resume=True), data, out_dir=tmp_path,
                    on_epoch=lambda epoch, row: again.append(epoch))  # fmt: skip
    assert again == [] and resumed.history == fresh.history and resumed.best_epoch == fresh.best_epoch
