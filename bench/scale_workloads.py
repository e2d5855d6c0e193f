"""bench/scale.py's workloads: bench/workloads.py's (multipart, one item per request) and text-json, the same texts
as text-only sent as JSON classify requests of one item each (`{"inputs": [{"text": …}]}`), the body most text
clients send: it skips the multipart parser, so the server's own per-request cost shows more."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench import report
from bench.workloads import WORKLOADS, Bundle, Workload, build_workloads
from service.manifest import read_manifest

TEXT_JSON = "text-json"
NAMES = (TEXT_JSON, *WORKLOADS)
JSON_HEADERS = {"content-type": "application/json"}


def json_body(text: str) -> tuple[bytes, dict]:
    return orjson.dumps({"inputs": [{"text": text}]}), JSON_HEADERS


def scale_workloads(bundle: Bundle, pool: int, only: list[str]) -> tuple[list[Workload], list[str]]:
    """The workloads named in `only` that the bundle can serve, in NAMES order; the skipped ones by name."""
    workloads, skipped = build_workloads(bundle, pool)
    text = next((w for w in workloads if w.name == "text-only"), None)
    if text is None:
        skipped.insert(0, TEXT_JSON)
    else:
        bodies = [json_body(item.text) for item in text.raw]
        workloads.insert(0, Workload(TEXT_JSON, text.modalities, raw=text.raw, bodies=bodies))
    return [w for w in workloads if w.name in only], [name for name in skipped if name in only]


def default_bundle(root: Path | None, scratch: Path) -> Bundle | str:
    """tridigits/1 under `root` (else the repository's models/), served alone: a scratch model dir holding a
    link to it, so the server loads that version only. A string says why there is none."""
    source = (root or report.REPO / "models") / "tridigits" / "1"
    if not (source / "manifest.json").is_file():
        return f"no bundle at {source} (`make default-bundle` builds it)"
    (scratch / "tridigits").mkdir(parents=True)
    (scratch / "tridigits" / "1").symlink_to(source.resolve(), target_is_directory=True)
    return Bundle(scratch, "tridigits", "1", read_manifest(source / "manifest.json"), built=False)
