"""`manifest` reads the tables users have — CSV, Parquet, JSONL — under their own column names."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import media
from training.__main__ import main
from training.data.convert import ConversionError, convert
from training.data.dataset import load_dataset

TWEETS = [("t1", "positive", "what a day"), ("t2", "negative", "the train is late again"), ("t3", "neutral", "ok")]


def written(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_tweets_csv_with_sentiment_and_body_columns_through_the_command(tmp_path, capsys):
    source = tmp_path / "tweets.csv"
    source.write_text("tweet_id,sentiment,body\n" + "".join(f"{i},{s},{b}\n" for i, s, b in TWEETS) + "t4,,no label\n")
    out = tmp_path / "data" / "dataset.jsonl"
    argv = ["manifest", "--from", str(source), "--out", str(out)]
    assert main([*argv, "--label-column", "sentiment", "--text-column", "body", "--id-column", "tweet_id"]) == 0
    assert "3 item(s) written; 1 unusable row(s) left out" in capsys.readouterr().out
    assert [(w["id"], w["label"], w["text"]) for w in written(out)] == TWEETS
    assert len(load_dataset(out)) == 3  # the trainer's own validation accepts it


def test_a_named_column_missing_is_refused_naming_it_and_the_header(tmp_path, capsys):
    source = tmp_path / "tweets.csv"
    source.write_text("sentiment,body\npositive,hi\n")
    out = tmp_path / "dataset.jsonl"
    assert main(["manifest", "--from", str(source), "--out", str(out), "--text-column", "content"]) == 2
    err = capsys.readouterr().err
    assert "'label' (the label column)" in err and "'content' (the text column)" in err
    assert "its columns are: sentiment, body" in err and not out.exists()


def test_parquet_with_int_labels_nulls_and_an_image_column(tmp_path):
    (tmp_path / "a.png").write_bytes(media.png(seed=1))
    table = pa.table({"y": [0, 1, None, 2], "caption": ["zero", None, "no label", None],
                      "picture": [None, "a.png", None, None], "fold": ["train", None, None, "val"]})  # fmt: skip
    pq.write_table(table, tmp_path / "items.parquet")
    out = tmp_path / "dataset.jsonl"
    columns = {"label": "y", "text": "caption", "image": "picture", "split": "fold"}
    count, problems = convert(tmp_path / "items.parquet", out, columns=columns)
    assert count == 2 and problems == ["row 3: no label", "row 4: no text, image, audio or video"]
    items = written(out)
    assert [(w["label"], w.get("text"), w.get("image")) for w in items] == [("0", "zero", None), ("1", None, "a.png")]
    assert items[0]["split"] == "train" and items[0]["id"] == "row-1"


def test_jsonl_bad_lines_are_unusable_rows_with_their_line_number(tmp_path):
    good = [{"id": 7, "label": 1, "text": "seven"}, {"id": "b", "label": True, "text": "flag"}, {"label": None}]
    lines = [json.dumps(good[0]), "{not json", "[1, 2]", "", json.dumps(good[1]), json.dumps(good[2] | {"text": "x"})]
    source = tmp_path / "items.ndjson"
    source.write_text("\n".join(lines) + "\n")
    count, problems = convert(source, tmp_path / "dataset.jsonl")
    assert count == 2
    assert problems[0].startswith("line 2: not valid JSON") and problems[1] == "line 3: a JSON list, not an object"
    assert problems[2] == "line 6: no label"
    assert [(w["id"], w["label"]) for w in written(tmp_path / "dataset.jsonl")] == [("7", "1"), ("b", "true")]


def test_an_unknown_suffix_or_unreadable_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "items.xlsx").write_bytes(b"PK")
    with pytest.raises(ConversionError, match=r"not a folder or a \.csv, \.parquet, \.pq, \.jsonl, \.ndjson file"):
        convert(tmp_path / "items.xlsx", tmp_path / "out.jsonl")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConversionError, match="not a readable Parquet file"):
        convert(tmp_path / "broken.parquet", tmp_path / "out.jsonl")
