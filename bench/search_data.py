"""The search bench's items and wire arithmetic (docs/benchmarks.md, "Search"): the test split's rows as the bodies
of /v1/embeddings (content arrays, one modality at a time), classify and zero-shot (v1 JSON items), and the bytes an
embedding takes in a response body, counted on the body itself (what the server wrote, not a re-serialisation).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

MODALITIES = ("image", "text", "audio", "video")
MEDIA_TYPES = {"image": "image/png", "video": "video/mp4"}
EMBEDDING_KEY = b'"embedding":'


@dataclass(frozen=True)
class Row:
    id: str
    label: int  # index into the bundle's labels
    media: dict  # modality → text, or the file's bytes

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.media)


def load_rows(data_dir: Path, labels: list[str], modalities: tuple[str, ...], split: str | None, items: int | None):
    """The first `items` rows of `split` (None: every split) in dataset.jsonl that have at least one of
    `modalities` (the others of each row dropped); media read from paths relative to `data_dir`."""
    index = {name: i for i, name in enumerate(labels)}
    rows = []
    for line in (data_dir / "dataset.jsonl").read_text().splitlines():
        record = json.loads(line)
        present = [m for m in modalities if m in record]
        if (split is not None and record.get("split") != split) or not present:
            continue
        media = {m: record[m] if m == "text" else (data_dir / record[m]).read_bytes() for m in present}
        rows.append(Row(record["id"], index[record["label"]], media))
        if items is not None and len(rows) == items:
            break
    return rows


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def content_array(row: Row, modality: str) -> list[dict]:
    """One modality of a row as a /v1/embeddings content array (docs/protocols.md, "OpenAI embeddings")."""
    value = row.media[modality]
    if modality == "text":
        return [{"type": "text", "text": value}]
    if modality == "audio":
        return [{"type": "input_audio", "input_audio": {"data": _b64(value), "format": "wav"}}]
    part = "image_url" if modality == "image" else "video_url"
    return [{"type": part, part: {"url": f"data:{MEDIA_TYPES[modality]};base64,{_b64(value)}"}}]


def v1_item(row: Row, modalities: tuple[str, ...]) -> dict:
    """The row's `modalities` as one v1 JSON item (classify, zero-shot): text as is, files base64."""
    return {m: row.media[m] if m == "text" else _b64(row.media[m]) for m in modalities}


def _value_end(body: bytes, start: int) -> int:
    """The index just past the JSON value starting at body[start] (a string, an array or an object)."""
    if body[start : start + 1] == b'"':
        return body.index(b'"', start + 1) + 1  # base64 and type names hold no quotes or escapes
    depth, index, in_string = 0, start, False
    while True:
        char = body[index : index + 1]
        if in_string:
            in_string = char != b'"'
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
        elif char in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1


def embedding_value_bytes(body: bytes) -> list[int]:
    """Bytes of each `"embedding":` value in an OpenAI embeddings response body, in order: the JSON array, the
    base64 string, or the object keyed by type (keys included: what a client must read for that embedding)."""
    sizes, start = [], body.find(EMBEDDING_KEY)
    while start >= 0:
        value = start + len(EMBEDDING_KEY)
        while body[value : value + 1] in (b" ", b"\n"):
            value += 1
        end = _value_end(body, value)
        sizes.append(end - value)
        start = body.find(EMBEDDING_KEY, end)
    return sizes


def raw_bytes(kind: str, dim: int) -> int:
    """An embedding's bytes as an array (float32, 1 byte per dimension, or 8 dimensions a byte)."""
    return {"float": 4 * dim, "int8": dim, "uint8": dim}.get(kind, -(-dim // 8))
