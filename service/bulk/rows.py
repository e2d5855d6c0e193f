"""An input row → the RawItem the server would build for it; an ItemResult (or the 4xx it got) → an output row.

Output columns (docs/bulk.md): id, label (the top label), scores (one float per manifest label, in the manifest's
order: a list, not a map, so every row has the same Arrow type), fused (float32 list), `<slot>_embedding` per
slot of the bundle (null where the item had no such input), error (the server's 4xx message, null when fine)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from service.bulk.sources import MediaFiles
from service.errors import FusionError, InvalidInput
from service.items import ItemResult, RawItem
from service.manifest import MODALITIES, Manifest

FILE_MODALITIES = tuple(m for m in MODALITIES if m != "text")  # columns holding a path (or the bytes themselves)


def raw_item(row: dict, media: MediaFiles) -> RawItem:
    """Text as given; a media column as bytes (a Parquet binary column) or a path read now. A missing file is
    the item's 422 naming the column, as a v1 request naming an unreadable part would get."""
    item = RawItem()  # errors name the column ("image: ..."); the row is known by its id
    for name in MODALITIES:
        value = row.get(name)
        if value is None or (isinstance(value, str) and value == ""):
            continue
        if name in FILE_MODALITIES and isinstance(value, str):
            try:
                value = media.read(value)
            except (OSError, ValueError) as error:
                raise InvalidInput(f"{name}: cannot read {value!r} ({type(error).__name__}: {error})", name) from None
        item.set(name, value)
    return item


def schema(manifest: Manifest) -> pa.Schema:
    vector = pa.list_(pa.float32())
    fields = [("id", pa.string()), ("label", pa.string()), ("scores", vector), ("fused", vector)]
    fields += [(f"{slot}_embedding", vector) for slot in manifest.encoders.slots()]
    return pa.schema(fields + [("error", pa.string())])


def answer_row(row_id, manifest: Manifest, task: str, outcome: ItemResult | Exception) -> dict:
    out = {name: None for name in schema(manifest).names} | {"id": None if row_id is None else str(row_id)}
    if isinstance(outcome, Exception):
        out["error"] = error_text(outcome)
        return out
    out["fused"] = _floats(outcome.fused)
    for slot, vector in outcome.embeddings.items():
        out[f"{slot}_embedding"] = _floats(vector)
    if task == "classify":
        out["scores"] = _floats(outcome.probabilities)
        out["label"] = manifest.labels[int(np.argmax(outcome.probabilities))]
    return out


def error_text(error: Exception) -> str:
    """A FusionError's own message (what the server's 4xx body says); anything else named by its type, so one
    broken row never stops the job."""
    if isinstance(error, FusionError):
        return error.message
    return f"{type(error).__name__}: {error}"


def _floats(vector) -> list[float]:
    return np.asarray(vector, dtype=np.float32).tolist()
