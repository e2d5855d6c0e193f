"""Zero-shot label embeddings, remembered by the front-end process (docs/zero-shot.md, "The label cache"): a
caller who sends the same label set again pays no text-encoder work for it.

Keyed by (model, version, manifest digest, label text): a version republished under the same name has another
digest, so its labels are embedded afresh. Bounded by the bytes of the vectors it holds, least recently used
out first, so neither reloads nor time make it grow: a version's entries leave as other versions' come in.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

# 16 MiB of vectors: 16,384 labels at dim 256 — a few hundred label sets of the size callers send
DEFAULT_MAX_BYTES = 16 << 20

Key = tuple[str, str, str, str]  # model, version, manifest digest, label text


class LabelCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._rows: OrderedDict[Key, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: Key) -> np.ndarray | None:
        row = self._rows.get(key)
        if row is None:
            self.misses += 1
            return None
        self._rows.move_to_end(key)
        self.hits += 1
        return row

    def put(self, key: Key, row: np.ndarray) -> None:
        row = np.array(row, dtype=np.float32)  # a copy: never a view pinning a whole batch's array
        row.flags.writeable = False
        if row.nbytes > self.max_bytes:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._rows[key] = row
        self.bytes += row.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._rows.popitem(last=False)
            self.bytes -= evicted.nbytes


def label_cache_of(state) -> LabelCache:
    """The app's cache (one per front-end process), made on first use; `state` is the app's `app.state`."""
    cache = getattr(state, "label_cache", None)
    if cache is None:
        cache = state.label_cache = LabelCache()
    return cache
