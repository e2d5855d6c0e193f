"""Publishing a bundle version (service/publish.py, shared by the training export and `fusionserve optimize`):
the next free number, immutable versions, and a version a scanning server sees whole or not at all."""

from __future__ import annotations

import pytest

from service.inference.registry import version_directories
from service.publish import VersionExists, next_version, publish, staged_version, valid_version


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
