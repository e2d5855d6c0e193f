"""The feature store: cached backbone features per (encoder id, content key), on disk under one root.

get(encoder, key) → array | None, put(encoder, key, array), flush(): callers put as they compute and flush
once a pass is done; what was flushed is on disk, written atomically, and visible to every process.
Layout: <root>/<encoder id>/<key[:2]>/<key>.npy (float32, any shape).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class FeatureCache:
    """One float32 .npy per (encoder id, content key) under root; writes are atomic (tmp + rename)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, encoder: str, key: str) -> Path:
        return self.root / encoder / key[:2] / f"{key}.npy"

    def get(self, encoder: str, key: str) -> np.ndarray | None:
        try:
            value = np.load(self.path(encoder, key), allow_pickle=False)
        except (FileNotFoundError, ValueError, EOFError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, encoder: str, key: str, value: np.ndarray) -> None:
        path = self.path(encoder, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(value, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)

    def flush(self) -> None:
        """Every put is already on disk (one file per item)."""
