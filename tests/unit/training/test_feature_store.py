"""The sharded feature store: roundtrip with mixed shapes, atomic shards, two writers at once, the legacy layout."""

from __future__ import annotations

import hashlib
import multiprocessing
import os

import numpy as np

from training.data.feature_store import SUFFIX, FeatureCache

ENC = "enc-test"


def key_of(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def test_roundtrip_mixed_shapes_before_and_after_flush(tmp_path):
    shapes = [(384,), (8, 16), (3, 2), (1,), (5, 7, 2)]
    values = {key_of(i): np.random.default_rng(i).standard_normal(shapes[i % 5]).astype(np.float32) for i in range(50)}
    cache = FeatureCache(tmp_path, shard_items=16)
    for key, value in values.items():
        cache.put(ENC, key, value)
    for key, value in values.items():  # some still pending, some already in shards
        np.testing.assert_array_equal(cache.get(ENC, key), value)
    cache.flush()
    fresh = FeatureCache(tmp_path)
    for key, value in values.items():
        got = fresh.get(ENC, key)
        assert got.dtype == np.float32 and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    assert fresh.get(ENC, key_of(999)) is None
    assert (fresh.hits, fresh.misses) == (50, 1)
    many = fresh.get_many(ENC, [key_of(3), key_of(999), key_of(7)])
    np.testing.assert_array_equal(many[0], values[key_of(3)])
    assert many[1] is None
    np.testing.assert_array_equal(many[2], values[key_of(7)])


def test_ten_thousand_items_are_a_handful_of_files(tmp_path):
    cache = FeatureCache(tmp_path)
    for i in range(10_000):
        cache.put(ENC, key_of(i), np.full(4, i, np.float32))
    cache.flush()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3 == cache.file_count(ENC)  # 4096 + 4096 + 1808
    assert FeatureCache(tmp_path).get(ENC, key_of(9_999))[0] == 9_999


def test_tmp_left_by_a_crash_is_ignored_and_shards_are_complete(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put(ENC, key_of(1), np.ones(3, np.float32))
    cache.flush()
    folder = tmp_path / ENC / "shards"
    (folder / f".crashed-000000{SUFFIX}.tmp").write_bytes(b"\x00" * 10)  # a writer killed mid-write
    reader = FeatureCache(tmp_path)
    np.testing.assert_array_equal(reader.get(ENC, key_of(1)), np.ones(3, np.float32))
    assert reader.get(ENC, key_of(2)) is None
    assert reader.file_count(ENC) == 1  # the stray tmp is not a shard
    # every listed shard opens and holds what it names: nothing on disk points at a missing file
    assert all(name.startswith(".") or name.endswith(SUFFIX) for name in os.listdir(folder))


def _writer(root: str, salt: str, count: int, ready, go) -> None:
    cache = FeatureCache(root, shard_items=64)
    ready.set()
    go.wait()
    for i in range(count):
        cache.put(ENC, key_of(i, salt), np.full((2, 3), i, np.float32))
    cache.flush()


def test_two_processes_write_the_same_encoder_then_read_all(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    pairs = zip("ab", readies, strict=True)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 300, r, go)) for s, r in pairs]
    for proc in procs:
        proc.start()
    for ready in readies:
        assert ready.wait(60)
    reader = FeatureCache(tmp_path)
    assert reader.get(ENC, key_of(0, "a")) is None  # a miss before the writers flush
    go.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    # the same reader finds both writers' items after their flush: a miss re-lists the changed directory
    for salt in "ab":
        values = reader.get_many(ENC, [key_of(i, salt) for i in range(300)])
        assert all(v is not None and v[0, 0] == i for i, v in enumerate(values))
    assert reader.file_count(ENC) == 2 * 5  # 300 items per writer in shards of 64


def test_legacy_per_item_npy_is_still_read(tmp_path):
    key = key_of(5)
    legacy = tmp_path / ENC / key[:2] / f"{key}.npy"
    legacy.parent.mkdir(parents=True)
    np.save(legacy, np.arange(6, dtype=np.float32).reshape(2, 3))
    cache = FeatureCache(tmp_path)
    np.testing.assert_array_equal(cache.get(ENC, key), np.arange(6, dtype=np.float32).reshape(2, 3))
    cache.put(ENC, key_of(6), np.zeros(2, np.float32))
    cache.flush()
    assert cache.file_count(ENC) == 1 and not (tmp_path / ENC / key_of(6)[:2] / f"{key_of(6)}.npy").exists()


def test_get_many_mixes_shards_pending_legacy_and_misses(tmp_path):
    legacy_key = key_of(1)
    (tmp_path / ENC / legacy_key[:2]).mkdir(parents=True)
    np.save(tmp_path / ENC / legacy_key[:2] / f"{legacy_key}.npy", np.full(2, 1, np.float32))
    cache = FeatureCache(tmp_path, shard_items=2)
    for i in (2, 3, 4):  # 2 and 3 fill a shard; 4 stays pending
        cache.put(ENC, key_of(i), np.full(2, i, np.float32))
    values = cache.get_many(ENC, [key_of(i) for i in range(5)])
    assert values[0] is None and [v[0] for v in values[1:]] == [1, 2, 3, 4]
    assert (cache.hits, cache.misses, cache.file_count(ENC)) == (4, 1, 1)
