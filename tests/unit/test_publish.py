"""Publishing a bundle version (service/publish.py, shared by the training export and `fusionserve optimize`):
the next free number, immutable versions, and a version a scanning server sees whole or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.engine.registry import Registry, version_directories
from service.metrics import Metrics
from service.publish import VersionExists, next_version, publish, staged_version, valid_version
from service.settings import Settings


def test_next_version_is_one_past_the_newest_of_every_directory_given(tmp_path):
    model, int8 = tmp_path / "m", tmp_path / "m-int8"
    assert next_version(model) == "1"  # no directory yet
    for directory in (model / "1", model / "3", model / ".4.tmp", int8 / "5", model / "notes"):
        directory.mkdir(parents=True)
    assert next_version(model) == "4" and next_version(model, int8) == "6"


@pytest.mark.parametrize(("given", "expected"), [("1", "1"), ("12", "12"), ("007", "7")])
def test_valid_versions(given, expected):
    assert valid_version(given) == expected


@pytest.mark.parametrize("given", ["0", "-1", "v2", "1.0", ""])
def test_invalid_versions_say_what_a_version_is(given):
    with pytest.raises(ValueError, match="positive integer"):
        valid_version(given)


def test_a_staged_version_is_invisible_until_published_then_whole(tmp_path):
    model = tmp_path / "tiny"
    with staged_version(model, "tiny", "2", "export") as staged:
        assert staged.parent.name == "tiny" and staged.name == "2"  # the loader checks <name>/<version>
        (staged / "manifest.json").write_text("{}")
        assert version_directories(model) == []  # what the server's poller would load: nothing yet
        publish(staged, model / "2")
    assert [p.name for p in version_directories(model)] == ["2"]
    assert (model / "2" / "manifest.json").read_text() == "{}"
    assert [p.name for p in model.iterdir()] == ["2"]  # no staging left behind


def test_a_failure_before_publishing_leaves_nothing(tmp_path):
    model = tmp_path / "tiny"
    with pytest.raises(RuntimeError), staged_version(model, "tiny", "1", "export") as staged:
        (staged / "half.onnx").write_bytes(b"\0")
        raise RuntimeError("parity failed")
    assert list(model.iterdir()) == []


def test_an_existing_version_is_refused_unless_overwritten(tmp_path):
    model = tmp_path / "tiny"
    (model / "1").mkdir(parents=True)
    (model / "1" / "old").write_text("v1")
    with staged_version(model, "tiny", "1", "export") as staged:
        (staged / "new").write_text("v1 again")
        with pytest.raises(VersionExists, match="--overwrite"):
            publish(staged, model / "1")
        assert (model / "1" / "old").is_file()  # untouched
        publish(staged, model / "1", overwrite=True)
    assert [p.name for p in (model / "1").iterdir()] == ["new"]
    assert [p.name for p in model.iterdir()] == ["1"]  # the replaced files are gone too


def test_versions_are_ascii_decimal_names(tmp_path):
    model = tmp_path / "m"
    for name in ("2", "\u00b2", "\u0663"):  # 2, superscript two, Arabic-Indic three
        (model / name).mkdir(parents=True)
    assert next_version(model) == "3" and [p.name for p in version_directories(model)] == ["2"]
    for given in ("\u00b2", "\u0663"):
        with pytest.raises(ValueError, match="positive integer"):
            valid_version(given)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def leftover(model: Path, name: str, age_s: float) -> Path:
    """A directory like an interrupted run leaves, its files last changed `age_s` ago."""
    files = model / name / "tiny" / "3"
    files.mkdir(parents=True)
    (files / "graph.onnx").write_bytes(b"\0")
    return last_changed(model / name, age_s)


def last_changed(directory: Path, age_s: float) -> Path:
    when = time.time() - age_s
    for path in [*directory.rglob("*"), directory]:
        os.utime(path, (when, when))
    return directory


def test_what_killed_runs_left_is_cleared_by_the_next_publish_and_the_servers_scan(tmp_path):
    model, dead, hour = tmp_path / "tiny", dead_pid(), 3600
    (model / "1").mkdir(parents=True)
    killed = leftover(model, f".export-3-{dead}.tmp", hour)
    aside = leftover(model, f".replaced-2-{dead}.tmp", hour)  # killed between an overwrite's two renames
    writing = leftover(model, f".export-4-{dead}.tmp", 1)  # recent: maybe another host's run, still writing
    running = leftover(model, f".optimize-5-{os.getppid()}.tmp", hour)  # its process is alive
    with staged_version(model, "tiny", "6", "export") as staged:
        (staged / "manifest.json").write_text("{}")
        publish(staged, model / "6")
    assert not killed.exists() and not aside.exists() and (model / "2" / "tiny").is_dir()  # version 2 is back
    assert writing.exists() and running.exists()
    last_changed(writing, hour)  # that run stopped writing long ago
    Registry(Settings(model_dir=tmp_path), Metrics()).discover()  # a server starting (or polling)
    assert not writing.exists() and running.exists()
    assert sorted(p.name for p in model.iterdir()) == sorted(["1", "2", "6", running.name])
