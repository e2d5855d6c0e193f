"""`fusionserve-train manifest`: the layouts users already have → the JSONL manifest (training/data/dataset.py).

    fusionserve-train manifest --from photos/ --out data/photos/dataset.jsonl    # a class-per-folder image tree
    fusionserve-train manifest --from items.csv --out data/items/dataset.jsonl   # label + text / image / audio

A folder tree: every image file under <root>/<label>/ is an item of that label. A CSV: one item per row, with
a `label` column and any of `text`, `image`, `audio`, `video` (paths relative to the CSV), and optional `id` and `split`
columns. Rows without a split are assigned one by a hash of their id (stable across runs; --val and --test
fractions). Every row the server could not use is reported with its reason, not written: no label, no input,
an empty or too long text, a missing or undecodable media file (the server's own decoders judge).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

from service.manifest import MODALITIES
from training.data.dataset import MAX_TEXT_CHARS, MEDIA, SPLITS, media_problem
from training.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class ConversionError(UserError):
    """Nothing usable: no manifest is written."""


def split_of(item_id: str, val: float, test: float) -> str:
    """A stable split from the id's hash: the same item lands in the same split on every run."""
    point = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") / 2**64
    return "test" if point < test else "val" if point < test + val else "train"


def _media(value: str, modality: str, base: Path) -> tuple[Path | None, str | None]:
    path = (base / value).resolve()
    if not path.is_file():
        return None, f"{modality} file {value} not found"
    return path, media_problem(modality, path)


def row_item(row: dict, base: Path) -> tuple[dict | None, str | None]:
    """One CSV row → (its manifest item, None) or (None, why it is unusable); media paths absolute."""
    label = (row.get("label") or "").strip()
    if not label:
        return None, "no label"
    item: dict = {"label": label}
    text = row.get("text")
    if text is not None and text.strip():
        if len(text) > MAX_TEXT_CHARS:
            return None, f"text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}"
        item["text"] = text
    for modality in MEDIA:
        if value := (row.get(modality) or "").strip():
            path, problem = _media(value, modality, base)
            if problem:
                return None, problem
            item[modality] = path
    if not any(m in item for m in MODALITIES):
        return None, "no text, image, audio or video"
    split = (row.get("split") or "").strip()
    if split and split not in SPLITS:
        return None, f"split {split!r} is not one of {', '.join(SPLITS)}"
    return item | ({"split": split} if split else {}), None


def csv_rows(path: Path) -> list[tuple[str, dict]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "label" not in reader.fieldnames:
            raise ConversionError(f"{path}: the CSV needs a header row with a 'label' column")
        return [(f"row {number}", row) for number, row in enumerate(reader, start=2)]  # line 1 is the header


def tree_rows(root: Path) -> list[tuple[str, dict]]:
    """Each file of <root>/<label>/… as a row {label, image, id}; other files become unusable rows."""
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            rows.append((str(relative), {"label": ""}))  # not inside a class folder
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            rows.append((str(relative), {"label": relative.parts[0], "unusable": "not an image file"}))
        else:
            rows.append((str(relative), {"label": relative.parts[0], "image": str(relative),
                                         "id": relative.with_suffix("").as_posix()}))  # fmt: skip
    return rows


def convert(
    source: Path, out: Path, val: float = 0.1, test: float = 0.1, columns: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    """Write the manifest of `source` (a folder tree or a CSV) to `out`; returns (items written, problems)."""
    base = source if source.is_dir() else source.parent
    rows = tree_rows(source) if source.is_dir() else csv_rows(source)
    items, problems, seen = [], [], set()
    for where, row in rows:
        item, problem = (None, row["unusable"]) if "unusable" in row else row_item(row, base)
        item_id = (row.get("id") or "").strip() or where.replace("row ", "row-")
        if item is not None and item_id in seen:
            item, problem = None, f"id {item_id!r} repeats an earlier row's"
        if item is None:
            problems.append(f"{where}: {problem}")
            continue
        seen.add(item_id)
        item = {"id": item_id, "split": item.pop("split", None) or split_of(item_id, val, test), **item}
        items.append({k: os.path.relpath(v, out.parent) if isinstance(v, Path) else v for k, v in item.items()})
    if not items:
        raise ConversionError(f"{source}: no usable item ({len(problems)} unusable):\n  " + "\n  ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return len(items), problems
