"""Every user error of `fusionserve-train` is one message on stderr and exit code 2, never a traceback (issue
19 §4): a bad dataset, a bad config file or value, a missing checkpoint, an existing version."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.__main__ import main


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory (runs/ and models/ resolve here) with a dataset with two bad lines."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text(
        '{"id": "a", "split": "train", "label": "red", "text": "a red square"}\n'
        '{"id": "b", "split": "training", "label": "red", "text": "red"}\n'
        '{"id": "c", "split": "test", "label": "blue", "imgae": "x.png"}\n'
    )
    (tmp_path / "typo.toml").write_text('name = "x"\nepoch = 3\n')
    (tmp_path / "broken.toml").write_text('name = "x\n')
    (tmp_path / "types.toml").write_text('name = "x"\nepochs = "three"\n')
    return tmp_path


CASES = {
    "dataset report": (
        ["train", "--data", "bad.jsonl"],
        ["3 problem(s)", "line 2: unknown split 'training'", "line 3: unknown key 'imgae'"],
    ),  # fmt: skip
    "missing dataset": (["train", "--data", "nope/dataset.jsonl"], ["nope/dataset.jsonl", "cannot read"]),
    "bad config value": (["train", "--fusion", "sum"], ["fusion must be one of", "'sum'"]),
    "heads vs dim": (["train", "--fusion", "attention", "--dim", "10", "--heads", "4"], ["divisible by heads"]),
    "bad version": (["export", "--version", "v2"], ["version: a version is a positive integer", "'v2'"]),
    "bad name": (["train", "--name", "../up"], ["name must be a plain directory name"]),
    "unknown config key": (["train", "--config", "typo.toml"], ["unknown config keys ['epoch']"]),
    "unreadable config": (["train", "--config", "broken.toml"], ["broken.toml: not a readable TOML file"]),
    "config value type": (["train", "--config", "types.toml"], ["epochs = 'three' (expected int)"]),
    "missing config": (["train", "--config", "nothing.toml"], ["config file nothing.toml not found", "tridigits"]),
    "missing checkpoint": (["evaluate", "--name", "colours"], ["no checkpoint runs/colours/model.pt", "train"]),
    "missing checkpoint, out-dir": (["export", "--out-dir", "elsewhere"], ["no checkpoint elsewhere/model.pt"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_user_errors_exit_2_with_a_message(workdir, capsys, case):
    argv, expected = CASES[case]
    assert main(argv + ["--progress", "false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for text in expected:
        assert text in err, (text, err)


def test_an_existing_version_is_refused_before_any_work(workdir, capsys):
    (workdir / "models" / "colours" / "1").mkdir(parents=True)
    assert main(["export", "--name", "colours", "--version", "1"]) == 2  # no checkpoint needed to say so
    err = capsys.readouterr().err
    assert "models/colours/1 is already published" in err and "--overwrite" in err
    (workdir / "models" / "colours-int8" / "2").mkdir(parents=True)
    assert main(["export", "--name", "colours", "--quantize", "int8"]) == 2  # next free: 3 (int8 shares numbers)
    assert main(["export", "--name", "colours", "--version", "2", "--quantize", "int8"]) == 2
    assert "models/colours-int8/2 is already published" in capsys.readouterr().err
    assert main(["export", "--name", "colours", "--quantize", "int8"]) == 2
    assert "no checkpoint runs/colours/model.pt" in capsys.readouterr().err  # version 3 was free


def test_a_real_process_prints_no_traceback(workdir):
    result = subprocess.run([sys.executable, "-m", "training", "train", "--data", "bad.jsonl"], capture_output=True,
                            text=True, timeout=120, cwd=workdir)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "line 3: unknown key 'imgae'" in result.stderr
