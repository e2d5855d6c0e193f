"""The feature store: cached backbone features per (encoder id, content key), on disk under one root.

get(encoder, key) → array | None, put(encoder, key, array), flush(): callers put as they compute and flush
once a pass is done; what was flushed is on disk, written atomically, and visible to every process.

Layout: <root>/<encoder id>/shards/<writer>-<n>.safetensors, one safetensors file per SHARD_ITEMS items (or
SHARD_BYTES), each tensor named by its content key (float32, any shape per key). A shard's own header is its
index, so there is no shared index file to race on: several processes (torchrun ranks) write the same encoder
at once, each under names unique to it, and a shard appears only by os.replace of a complete file — a crash
leaves at most a dot-prefixed tmp file, which readers never list. Reads memory-map the shards.
The older layout, <root>/<encoder id>/<key[:2]>/<key>.npy, is still read on a miss, so existing caches keep
working; new writes go to shards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
from safetensors.numpy import save

SHARD_ITEMS = 4096
SHARD_BYTES = 256 << 20
SUFFIX = ".safetensors"


class _Encoder:
    """One encoder's shards as seen by this process: key → open shard, plus this process's pending puts."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index: dict[str, tuple] = {}
        self.shards: set[str] = set()
        self.seen_mtime: int | None = None
        self.pending: dict[str, np.ndarray] = {}
        self.pending_bytes = 0

    def refresh(self) -> bool:
        """Open shards that appeared since the last look; returns whether any did.

        The directory's mtime changes whenever a shard is renamed into it, so an unchanged mtime skips the
        listing. A mtime within the last second is not trusted (a rename in the same clock tick keeps it).
        """
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self.seen_mtime and time.time_ns() - mtime > 1_000_000_000:
            return False
        self.seen_mtime = mtime
        new = [e.name for e in os.scandir(self.folder) if e.name.endswith(SUFFIX) and not e.name.startswith(".")]
        new = [name for name in new if name not in self.shards]
        for name in sorted(new):
            self.shards.add(name)
            for key, where in open_shard(self.folder / name).items():
                self.index.setdefault(key, where)
        return bool(new)

    def read(self, key: str) -> np.ndarray | None:
        where = self.index.get(key)
        if where is None:
            return None
        data, start, end, shape = where
        return data[start:end].reshape(shape).copy()  # a copy: callers own what they get


def open_shard(path: Path) -> dict[str, tuple]:
    """A shard's index: key → (its memory map, start, end, shape), from the safetensors header.

    The file is memory-mapped, not read: the safetensors format is an 8-byte little-endian header length, a JSON
    header of name → dtype, shape and data offsets, then the data. safe_open's get_tensor costs ~20 µs an item
    in Python; a slice of the map is a few.
    """
    raw = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)  # a plain view: memmap slices cost µs each
    size = int.from_bytes(raw[:8].tobytes(), "little")
    header = json.loads(raw[8 : 8 + size].tobytes())
    data = raw[8 + size :].view(np.float32)  # every tensor here is float32; offsets are in bytes
    return {key: (data, meta["data_offsets"][0] // 4, meta["data_offsets"][1] // 4, tuple(meta["shape"]))
            for key, meta in header.items() if key != "__metadata__"}  # fmt: skip


class FeatureCache:
    """Float32 features per (encoder id, content key) under root, in sharded safetensors files."""

    def __init__(self, root: Path | str, shard_items: int = SHARD_ITEMS, shard_bytes: int = SHARD_BYTES):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.shard_items, self.shard_bytes = shard_items, shard_bytes
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._written = 0
        self._encoders: dict[str, _Encoder] = {}

    def _encoder(self, encoder: str) -> _Encoder:
        if encoder not in self._encoders:
            self._encoders[encoder] = _Encoder(self.root / encoder / "shards")
        return self._encoders[encoder]

    def legacy_path(self, encoder: str, key: str) -> Path:
        return self.root / encoder / key[:2] / f"{key}.npy"

    def _lookup(self, enc: _Encoder, encoder: str, key: str) -> np.ndarray | None:
        if (value := enc.pending.get(key)) is not None:
            return value.copy()
        value = enc.read(key)
        if value is None and enc.refresh():
            value = enc.read(key)
        if value is not None:
            return value
        try:
            return np.load(self.legacy_path(encoder, key), allow_pickle=False)
        except (FileNotFoundError, ValueError, EOFError, OSError):
            return None

    def get(self, encoder: str, key: str) -> np.ndarray | None:
        value = self._lookup(self._encoder(encoder), encoder, key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def get_many(self, encoder: str, keys: list[str]) -> list[np.ndarray | None]:
        """get() for many keys at once: one directory look for the whole batch, not one per miss."""
        enc = self._encoder(encoder)
        if any(key not in enc.index and key not in enc.pending for key in keys):
            enc.refresh()
        values = [enc.read(key) for key in keys]
        values = [self._lookup(enc, encoder, key) if v is None else v for key, v in zip(keys, values, strict=True)]
        found = sum(v is not None for v in values)
        self.hits, self.misses = self.hits + found, self.misses + len(keys) - found
        return values

    def put(self, encoder: str, key: str, value: np.ndarray) -> None:
        enc = self._encoder(encoder)
        array = np.ascontiguousarray(value, dtype=np.float32)
        if key in enc.pending or key in enc.index:
            return  # content-addressed: the same key holds the same features
        enc.pending[key] = array
        enc.pending_bytes += array.nbytes
        if len(enc.pending) >= self.shard_items or enc.pending_bytes >= self.shard_bytes:
            self._write_shard(enc)

    def _write_shard(self, enc: _Encoder) -> None:
        if not enc.pending:
            return
        enc.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self._writer}-{self._written:06d}{SUFFIX}"
        self._written += 1
        tmp = enc.folder / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(save(enc.pending, metadata={"format": "fusionserve-features"}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, enc.folder / name)  # the shard appears complete or not at all
        enc.pending, enc.pending_bytes = {}, 0
        enc.refresh()

    def flush(self) -> None:
        """Write every pending put as shards; afterwards other processes' get() finds them."""
        for enc in self._encoders.values():
            self._write_shard(enc)

    def file_count(self, encoder: str) -> int:
        """Shards on disk for one encoder (what a million items cost in files)."""
        folder = self.root / encoder / "shards"
        return sum(1 for n in os.listdir(folder) if n.endswith(SUFFIX)) if folder.is_dir() else 0
