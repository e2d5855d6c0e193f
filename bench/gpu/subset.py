"""`python -m bench.gpu.subset`: a small copy of the tridigits data that fits the device machine's carried tree
(64 MiB; data/ is git-ignored and 600 MB): the first --items items of each split, their image/audio/text only
(no views, no video), media copied beside a new dataset.jsonl. Then `DATA=<out>/dataset.jsonl bench/gpu/run.sh`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu.subset", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/tridigits/dataset.jsonl")
    parser.add_argument("--items", type=int, default=400, help="items per split")
    parser.add_argument("--out", default=".cache/tridigits-gpu")
    args = parser.parse_args(argv)
    source, out = Path(args.data).parent, Path(args.out)
    counts: dict[str, int] = {}
    lines = []
    for line in Path(args.data).read_text().splitlines():
        row = json.loads(line)
        if row.get("video") or counts.get(row["split"], 0) >= args.items:
            continue
        counts[row["split"]] = counts.get(row["split"], 0) + 1
        row.pop("views", None)
        for role in ("image", "audio"):
            if row.get(role):
                (out / row[role]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / row[role], out / row[role])
        lines.append(json.dumps(row) + "\n")
    (out / "dataset.jsonl").write_text("".join(lines))
    print(f"{out / 'dataset.jsonl'}: {counts}")


if __name__ == "__main__":
    main()
