"""JSONL dataset validation: every error path, every bad line reported with its line number."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from training.data.dataset import DatasetError, Example, labels_of, load_dataset


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A directory with one good PNG, one good WAV and some broken files."""
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "ok.png")
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 8000, format="WAV")
    (tmp_path / "ok.wav").write_bytes(buf.getvalue())
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "text.wav").write_bytes(b"hello, I am not audio")
    (tmp_path / "truncated.wav").write_bytes(buf.getvalue()[:60])
    (tmp_path / "sub").mkdir()
    return tmp_path


def write(root: Path, *lines: object) -> Path:
    manifest = root / "data.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return manifest


def problems(manifest: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(manifest)
    assert str(manifest) in str(info.value)
    return info.value.problems


def test_valid_manifest_loads_every_modality_subset(media: Path) -> None:
    manifest = write(
        media,
        {"id": "a", "split": "train", "label": "cat", "image": "ok.png"},
        "",  # blank lines are skipped
        {"id": "b", "split": "val", "label": 3, "text": "hello", "audio": "ok.wav", "meta": {"src": 1}},
        {"id": "c", "split": "test", "label": "cat", "image": "ok.png", "text": "t", "audio": "ok.wav"},
    )
    examples = load_dataset(manifest)
    assert examples[0] == Example("a", "train", "cat", image=media / "ok.png")
    assert examples[1] == Example("b", "val", "3", text="hello", audio=media / "ok.wav")
    assert examples[2].modalities() == ["image", "text", "audio"]
    assert labels_of(examples) == ["3", "cat"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "x", "split": "train"', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ({"split": "train", "label": "a", "text": "t"}, "id missing"),
        ({"id": " ", "split": "train", "label": "a", "text": "t"}, "id missing"),
        ({"id": "x", "label": "a", "text": "t"}, "split missing"),
        ({"id": "x", "split": "dev", "label": "a", "text": "t"}, "unknown split 'dev'"),
        ({"id": "x", "split": "train", "text": "t"}, "label missing"),
        ({"id": "x", "split": "train", "label": "", "text": "t"}, "label missing"),
        ({"id": "x", "split": "train", "label": True, "text": "t"}, "label missing"),
        ({"id": "x", "split": "train", "label": "a"}, "no modality"),
        ({"id": "x", "split": "train", "label": "a", "image": None, "text": None}, "no modality"),
        ({"id": "x", "split": "train", "label": "a", "imgae": "ok.png", "text": "t"}, "unknown key 'imgae'"),
        ({"id": "x", "split": "train", "label": "a", "text": "t", "meta": 3}, "meta must be a JSON object"),
        ({"id": "x", "split": "train", "label": "a", "text": "   "}, "bad text: text is empty"),
        ({"id": "x", "split": "train", "label": "a", "text": "a\x00b"}, "bad text: text contains a NUL"),
        ({"id": "x", "split": "train", "label": "a", "text": 5}, "bad text: text must be a string"),
        ({"id": "x", "split": "train", "label": "a", "image": 5}, "image must be a non-empty path string"),
        ({"id": "x", "split": "train", "label": "a", "image": "nope.png"}, "missing file nope.png"),
        ({"id": "x", "split": "train", "label": "a", "audio": "sub"}, "missing file sub (a directory)"),
        ({"id": "x", "split": "train", "label": "a", "image": "garbage.png"}, "unreadable image garbage.png"),
        ({"id": "x", "split": "train", "label": "a", "image": "ok.wav"}, "unreadable image ok.wav"),
        ({"id": "x", "split": "train", "label": "a", "audio": "text.wav"}, "unreadable audio text.wav"),
        ({"id": "x", "split": "train", "label": "a", "audio": "truncated.wav"}, "unreadable audio truncated.wav"),
    ],
)
def test_each_error_path_names_line_and_reason(media: Path, line: object, expected: str) -> None:
    good = {"id": "good", "split": "train", "label": "a", "text": "fine"}
    found = problems(write(media, good, line))
    assert len(found) == 1, found
    assert found[0].startswith("line 2: ")
    assert expected in found[0]


def test_unreadable_media_reason_comes_from_the_server_preprocessing(media: Path) -> None:
    found = problems(write(media, {"id": "x", "split": "train", "label": "a", "audio": "text.wav"}))
    assert "accepted: WAV" in found[0]  # service.preprocess's own message


def test_every_bad_line_is_reported_not_just_the_first(media: Path) -> None:
    manifest = write(
        media,
        {"id": "a", "split": "train", "label": "x", "image": "ok.png"},
        "not json",
        {"id": "b", "split": "nope", "label": "x", "text": "t"},
        {"id": "c", "split": "train", "label": "x", "image": "missing.png", "audio": "text.wav"},
        {"id": "a", "split": "test", "label": "x", "text": "t"},
        {"id": "d", "split": "train"},
    )
    found = problems(manifest)
    assert [p.split(":")[0] for p in found] == ["line 2", "line 3", "line 4", "line 4", "line 5", "line 6", "line 6"]
    assert "missing file missing.png" in found[2] and "unreadable audio text.wav" in found[3]
    assert found[4] == "line 5: duplicate id 'a' (first on line 1)"
    assert "label missing" in found[5] and "no modality" in found[6]


def test_duplicate_of_an_invalid_line_is_still_reported(media: Path) -> None:
    found = problems(
        write(
            media,
            {"id": "a", "split": "bad", "label": "x", "text": "t"},
            {"id": "a", "split": "train", "label": "x", "text": "t"},
        )
    )
    assert found[-1] == "line 2: duplicate id 'a' (first on line 1)"


def test_empty_and_unreadable_manifests(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert problems(empty) == ["the manifest holds no items"]
    assert "cannot read the manifest" in problems(tmp_path / "absent.jsonl")[0]
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "cannot read the manifest" in problems(binary)[0]


def test_check_media_false_skips_decoding_but_not_existence(media: Path) -> None:
    bad = write(media, {"id": "x", "split": "train", "label": "a", "image": "garbage.png"})
    assert load_dataset(bad, check_media=False)[0].image == media / "garbage.png"
    missing = write(media, {"id": "x", "split": "train", "label": "a", "image": "nope.png"})
    with pytest.raises(DatasetError, match="missing file nope.png"):
        load_dataset(missing, check_media=False)


def test_paths_are_relative_to_the_manifest(media: Path) -> None:
    nested = media / "sub" / "data.jsonl"
    nested.write_text(json.dumps({"id": "x", "split": "train", "label": "a", "image": "../ok.png"}) + "\n")
    assert load_dataset(nested)[0].image == media / "sub" / ".." / "ok.png"
