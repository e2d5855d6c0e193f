"""`fusionserve-train manifest`: a class-per-folder image tree and a CSV become the JSONL manifest the trainer
loads, every unusable row reported with its reason, splits stable across runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests import media
from training.__main__ import main
from training.data.convert import split_of
from training.data.dataset import load_dataset


def test_a_folder_tree_becomes_a_manifest_and_the_unusable_files_are_named(tmp_path, capsys):
    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(5):
            (root / label / f"{i}.png").write_bytes(media.png(seed=i))
    (root / "cat" / "notes.txt").write_text("not a picture")
    (root / "dog" / "broken.jpg").write_bytes(media.truncated_jpeg())
    (root / "stray.png").write_bytes(media.png())
    out = tmp_path / "data" / "dataset.jsonl"
    assert main(["manifest", "--from", str(root), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "10 item(s) written; 3 unusable row(s) left out" in report
    assert "cat/notes.txt: not an image file" in report and "stray.png: no label" in report
    assert "dog/broken.jpg: unreadable image broken.jpg" in report
    examples = load_dataset(out)  # the trainer's own validation accepts it
    assert sorted({e.label for e in examples}) == ["cat", "dog"] and len(examples) == 10
    assert {e.id: e.split for e in examples} == {e.id: split_of(e.id, 0.1, 0.1) for e in examples}


def test_a_csv_with_text_and_audio_columns_reports_each_bad_row(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(media.audio(seconds=0.5))
    rows = [
        "id,label,text,audio,split",
        "one,yes,a short clip,a.wav,train",
        "two,no,just words,,val",
        "three,,no label here,,",
        "four,yes,,missing.wav,",
        "five,no,,,",
        "six,yes,fine,,holdout",
        "two,no,repeated id,,",
    ]
    source = tmp_path / "items.csv"
    source.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out" / "dataset.jsonl"
    assert main(["manifest", "--from", str(source), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    for expected in ("row 4: no label", "row 5: audio file missing.wav not found",
                     "row 6: no text, image, audio or video", "row 7: split 'holdout' is not one of train, val, test",
                     "row 8: id 'two' repeats"):  # fmt: skip
        assert expected in report
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["id"], w["split"]) for w in written] == [("one", "train"), ("two", "val")]
    assert written[0]["audio"] == "../a.wav"  # relative to the manifest, as the dataset format says
    assert Path(out.parent / written[0]["audio"]).resolve() == (tmp_path / "a.wav").resolve()


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "items.csv"
    source.write_text("label,text\n,\n")
    out = tmp_path / "dataset.jsonl"
    assert main(["manifest", "--from", str(source), "--out", str(out)]) == 2
    assert "no usable item" in capsys.readouterr().err and not out.exists()
