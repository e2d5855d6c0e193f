"""Rows of a bulk job (service/bulk/rows.py, sources.py): what becomes a RawItem, and the output row's shape."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from service.bulk.rows import answer_row, raw_item, schema  # noqa: E402
from service.bulk.sources import MediaFiles, input_kind  # noqa: E402
from service.errors import InvalidInput  # noqa: E402
from service.items import ItemResult  # noqa: E402
from service.manifest import read_manifest  # noqa: E402
from tests.bundles import build_bundle  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return read_manifest(build_bundle(tmp_path_factory.mktemp("m"), golden=False) / "manifest.json")


def test_paths_are_read_relative_to_the_input_and_empty_cells_are_absent(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png bytes")
    media = MediaFiles(str(tmp_path / "items.jsonl"))
    item = raw_item({"id": "1", "image": "a.png", "text": "hi", "audio": ""}, media)
    assert item.modalities() == ["image", "text"] and item.image == b"png bytes"
    assert raw_item({"image": b"inline"}, media).image == b"inline"  # a Parquet binary cell


def test_a_missing_file_is_the_rows_422_naming_the_column(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        raw_item({"image": "nope.png"}, MediaFiles(str(tmp_path / "items.csv")))
    assert caught.value.field == "image" and "nope.png" in caught.value.message


def test_output_row_has_every_slot_column_and_scores_in_label_order(manifest):
    assert schema(manifest).names == ["id", "label", "scores", "fused", "image_embedding", "text_embedding",
                                      "audio_embedding", "error"]  # fmt: skip
    result = ItemResult(["text"], np.array([0.1, 0.6, 0.2, 0.1]), np.ones(8), {"text": np.zeros(8)})
    row = answer_row(7, manifest, "classify", result)
    assert row["id"] == "7" and row["label"] == manifest.labels[1] and row["error"] is None
    assert row["image_embedding"] is None and len(row["text_embedding"]) == 8
    assert answer_row("x", manifest, "embed", result)["scores"] is None
    failed = answer_row("y", manifest, "classify", InvalidInput("text: too long", field="text"))
    assert failed["error"] == "text: too long" and failed["fused"] is None


def test_input_kind_by_suffix():
    assert [input_kind(p) for p in ("a.JSONL", "b.csv", "s3://x/c.parquet")] == ["json", "csv", "parquet"]
    with pytest.raises(ValueError, match="unknown format"):
        input_kind("items.txt")
