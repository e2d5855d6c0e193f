"""The zero-shot label cache (service/frontend/label_cache.py): bounded by its vectors' bytes, least recently used
out first, rows copied and read-only."""

from __future__ import annotations

import numpy as np
import pytest

from service.frontend.label_cache import LabelCache


def key(text: str, version: str = "1") -> tuple[str, str, str, str]:
    return ("tiny", version, "digest", text)


def test_the_least_recently_used_rows_leave_once_the_bytes_are_spent():
    cache = LabelCache(max_bytes=3 * 8 * 4)  # three rows of dim 8
    for text in "abc":
        cache.put(key(text), np.full(8, ord(text), np.float32))
    assert cache.get(key("a")) is not None  # a is now the most recent
    cache.put(key("d"), np.zeros(8, np.float32))
    assert cache.get(key("b")) is None and len(cache) == 3 and cache.bytes == 3 * 8 * 4
    assert [cache.get(key(t)) is not None for t in "acd"] == [True, True, True]
    assert (cache.hits, cache.misses) == (4, 1)


def test_versions_never_share_rows_and_many_versions_stay_within_the_bound():
    cache = LabelCache(max_bytes=10 * 8 * 4)
    for version in range(100):  # a hundred reloads of the same label set
        for text in "abcd":
            cache.put(key(text, str(version)), np.ones(8, np.float32) * version)
    assert cache.bytes <= 10 * 8 * 4 and len(cache) == 10
    assert cache.get(key("a", "0")) is None
    assert cache.get(key("d", "99"))[0] == 99


def test_a_row_is_a_read_only_copy():
    cache, batch = LabelCache(), np.ones((4, 8), np.float32)
    cache.put(key("a"), batch[1])
    batch[1] = 0
    row = cache.get(key("a"))
    assert row.base is None and row.tolist() == [1.0] * 8
    with pytest.raises(ValueError):
        row[0] = 2.0
