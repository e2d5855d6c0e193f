"""`fusionserve-train manifest`: the layouts users already have → the JSONL manifest (training/data/dataset.py).

    fusionserve-train manifest --from photos/ --out data/photos/dataset.jsonl    # a class-per-folder image tree
    fusionserve-train manifest --from items.csv --out data/items/dataset.jsonl   # label + text / image / audio

    fusionserve-train manifest --from tweets.parquet --label-column sentiment --text-column body --out …

A folder tree: every image file under <root>/<label>/ is an item of that label. A table — CSV, Parquet (.parquet,
.pq) or JSONL (.jsonl, .ndjson: one JSON object per line) — one item per row, with a label column and any of
text, image, audio, video (paths relative to the file), and optional id and split columns; each role's column
is named by --<role>-column (default: the role's own name). Values that are not strings are written as text
(label 0 → "0"); a null is a missing value. Rows without a split are assigned one by a hash of their id
(stable across runs; --val and --test fractions). Every row the server could not use is reported with its
reason, not written: no label, no input, an empty or too long text, a missing or undecodable media file (the
server's own decoders judge).
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
    """One row keyed by role → (its manifest item, None) or (None, why it is unusable); media paths absolute."""
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


TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def cell(value) -> str | None:
    """A source value as the manifest's text: label 0 → "0", 2.0 (an int column with nulls) → "2", null → missing."""
    if value is None or (isinstance(value, float) and value != value):  # NaN is how pandas writes a null
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else str(value)


def csv_table(path: Path) -> tuple[list[str], list[tuple[str, dict | str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ConversionError(f"{path}: the CSV is empty; it needs a header row naming its columns")
        return list(reader.fieldnames), [(f"row {n}", row) for n, row in enumerate(reader, start=2)]  # 1: header


def parquet_table(path: Path) -> tuple[list[str], list[tuple[str, dict | str]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several kinds (ArrowInvalid, OSError) for a file it cannot read
        raise ConversionError(f"{path}: not a readable Parquet file ({error})") from error
    return table.column_names, [(f"row {n}", row) for n, row in enumerate(table.to_pylist(), start=1)]


def jsonl_table(path: Path) -> tuple[list[str], list[tuple[str, dict | str]]]:
    """One JSON object per line; a line that is not one is an unusable row with its line number."""
    header: dict[str, None] = {}
    rows: list[tuple[str, dict | str]] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                rows.append((f"line {number}", f"not valid JSON ({error.msg} at column {error.colno})"))
                continue
            if not isinstance(row, dict):
                rows.append((f"line {number}", f"a JSON {type(row).__name__}, not an object"))
                continue
            header.update(dict.fromkeys(row))
            rows.append((f"line {number}", row))
    return list(header), rows


def table_rows(path: Path, columns: dict[str, str] | None) -> list[tuple[str, dict]]:
    """A CSV, Parquet or JSONL file → rows keyed by role (label, text, …) through the column mapping."""
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConversionError(f"{path}: not a folder or a {', '.join(TABLE_SUFFIXES)} file")
    header, raw = {"csv": csv_table, "parquet": parquet_table, "jsonl": jsonl_table}[kind](path)
    names = {role: role for role in ("label", "text", *MEDIA, "id", "split")} | (columns or {})
    # a column the user named must exist; a default name (text, image, …) may be absent: that role is unused
    missing = [
        f"{names[r]!r} (the {r} column)" for r in names if names[r] not in header and (r == "label" or names[r] != r)
    ]
    if missing:
        raise ConversionError(
            f"{path}: no column {', '.join(missing)}; its columns are: {', '.join(map(str, header)) or 'none'}"
        )
    return [(where, {"unusable": row} if isinstance(row, str) else {r: cell(row.get(c)) for r, c in names.items()})
            for where, row in raw]  # fmt: skip


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
    """Write the manifest of `source` (a folder tree, or a CSV/Parquet/JSONL table) to `out`.

    columns maps a role (label, text, image, audio, video, id, split) to the source's column of it; returns
    (items written, problems).
    """
    base = source if source.is_dir() else source.parent
    rows = tree_rows(source) if source.is_dir() else table_rows(source, columns)
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
