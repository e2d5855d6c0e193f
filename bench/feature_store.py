"""The feature store at a million items: write and read throughput, disk and files, against one .npy per item.

    nice .venv/bin/python bench/feature_store.py --items 1000000 --dim 384 --legacy-items 20000

Synthetic features only (random float32 [dim] vectors, keys = sha256 of the index), in a temp dir under /tmp
that is deleted afterwards. The legacy layout (one .npy per item, as the cache wrote before shards) is measured
on a smaller sample and its file count extrapolated; both in the same run. Writes
bench/results/feature_store/{README.md,feature_store.json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.data.feature_store import FeatureCache  # noqa: E402

ENC = "bench-encoder"
OUT = Path(__file__).parent / "results" / "feature_store"


def disk(root: Path) -> tuple[int, int, int]:
    """Files, their bytes, and the bytes the filesystem allocated (a 1.5 KB .npy still takes a 4 KB block)."""
    stats = [p.stat() for p in root.rglob("*") if p.is_file()]
    return len(stats), sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def write(cache: FeatureCache, keys: list[str], dim: int, put) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for block in range(0, len(keys), 4096):
        values = rng.standard_normal((min(4096, len(keys) - block), dim), dtype=np.float32)
        for key, value in zip(keys[block : block + 4096], values, strict=True):
            put(key, value)
    cache.flush()
    return time.perf_counter() - start


def legacy_put(root: Path):
    def put(key: str, value: np.ndarray) -> None:  # the pre-shard layout: one file per item, tmp + rename
        path = root / ENC / key[:2] / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        np.save(tmp, value, allow_pickle=False)
        os.replace(tmp, path)

    return put


def measure(root: Path, n: int, dim: int, legacy: bool) -> dict:
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    cache = FeatureCache(root)
    seconds = write(cache, keys, dim, legacy_put(root) if legacy else lambda k, v: cache.put(ENC, k, v))
    files, size, allocated = disk(root)
    order = np.random.default_rng(1).permutation(n)
    reader = FeatureCache(root)
    start = time.perf_counter()
    for i in order:
        assert reader.get(ENC, keys[i]) is not None
    random_s = time.perf_counter() - start
    reader = FeatureCache(root)
    start = time.perf_counter()
    for block in range(0, n, 4096):
        assert all(v is not None for v in reader.get_many(ENC, keys[block : block + 4096]))
    many_s = time.perf_counter() - start
    mb = n * dim * 4 / 1e6
    return {"items": n, "dim": dim, "write_s": round(seconds, 2), "write_items_s": round(n / seconds),
            "write_mb_s": round(mb / seconds, 1), "read_random_items_s": round(n / random_s),
            "read_get_many_items_s": round(n / many_s), "files": files, "disk_mb": round(size / 1e6, 1),
            "allocated_mb": round(allocated / 1e6, 1),
            "payload_mb": round(mb, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--legacy-items", type=int, default=20_000)
    args = parser.parse_args()
    results = {"command": "nice .venv/bin/python " + " ".join(sys.argv), "machine": platform.processor() or "",
               "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}  # fmt: skip
    for name, n, legacy in (("sharded", args.items, False), ("legacy", args.legacy_items, True)):
        root = Path(tempfile.mkdtemp(prefix=f"fs-bench-{name}-", dir="/tmp"))
        try:
            results[name] = measure(root, n, args.dim, legacy)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(name, results[name], flush=True)
    scale = args.items / args.legacy_items  # the legacy layout extrapolated to the sharded run's item count
    legacy = results["legacy"]
    legacy["extrapolated"] = {"files": round(legacy["files"] * scale), "write_s": round(legacy["write_s"] * scale),
                              "allocated_mb": round(legacy["allocated_mb"] * scale)}  # fmt: skip
    results["load_after"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "feature_store.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
