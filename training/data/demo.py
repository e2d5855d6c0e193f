"""tridigits: a deterministic tri-modal digit dataset in the spirit of AV-MNIST.

image = a real handwritten digit (scikit-learn's load_digits) upscaled and corrupted (blur, occlusion,
noise); audio = the digit's English word spoken by espeak-ng over several accents, voice variants, speeds
and pitches, in coloured noise at a random SNR; text = a truthful hint (numeral, word in one of seven
languages, or a partial hint naming 2–5 digits), maybe with typos, or absent. Some items also lack the
image or the audio, so every modality subset occurs. Test voices (accent+variant) never occur in train or
val, and each split draws its images from its own disjoint share of load_digits. video = MP4 clips of those
digits moving while a voice speaks them, one or two digits in turn, some without picture or sound
(demo_clips.py).

Every corruption strength is a DemoConfig field (demo_jobs.py): build_tridigits(..., config=DemoConfig(...)).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.data.demo_clips import plan_clean_clips, plan_clips
from training.data.demo_jobs import DemoConfig, audio_job, image_job, image_pools, labelled_splits
from training.data.demo_media import AudioJob, ImageJob
from training.data.demo_readme import write_readme
from training.data.demo_text import make_hint
from training.data.demo_views import CLEAN_VARIANTS, audio_views, image_views, robustness_items
from training.data.demo_write import make_item

ROBUSTNESS = "robustness.jsonl"
_image_job = image_job  # the name tests/unit/training/test_views.py imports


def _presence(cfg: DemoConfig, rng: np.random.Generator) -> tuple[bool, bool, bool]:
    absent = (cfg.image_absent_prob, cfg.text_absent_prob, cfg.audio_absent_prob)
    image, text, audio = (bool(rng.random() >= p) for p in absent)
    return image or not (text or audio), text, audio


def plan(cfg: DemoConfig, seed: int, scale: float) -> list[dict]:
    """Every item's row, media jobs and seed; deterministic in (cfg, seed, scale)."""
    rng = np.random.default_rng(seed)
    images, pools = image_pools(cfg, rng)
    n = max(30, round(cfg.n_items * scale))
    labels, splits = labelled_splits(n, cfg.split_fractions)
    order = rng.permutation(n)
    items = []
    for number, i in enumerate(order):
        digit, split = int(labels[i]), str(splits[i])
        has_image, has_text, has_audio = _presence(cfg, rng)
        source = int(rng.choice(pools[(split, digit)]))
        row = {"id": f"td{number:05d}", "split": split, "label": str(digit)}
        image = image_job(cfg, images[source], rng) if has_image else None
        audio = audio_job(cfg, digit, split, rng) if has_audio else None
        hint, kind = make_hint(digit, rng, cfg) if has_text else (None, None)
        row |= {"image": f"images/{row['id']}.png"} if image else {}
        row |= {"text": hint} if hint else {}
        row |= {"audio": f"audio/{row['id']}.wav"} if audio else {}
        row["meta"] = _meta(source if image else None, audio, kind)
        image_seed, audio_seed = np.random.SeedSequence([seed, number]).spawn(2)
        jobs = [(row.get("image"), image, image_seed), (row.get("audio"), audio, audio_seed)]
        items.append({"row": row, "jobs": [job for job in jobs if job[1] is not None]})
    return items


def add_views(cfg: DemoConfig, items: list[dict], seed: int) -> None:
    """Training views of every train item, drawn from their own generator (the items stay as they were)."""
    rng = np.random.default_rng([seed, 1])
    for number, item in enumerate(items):
        row = item["row"]
        if row["split"] != "train":
            continue
        originals = {("image" if isinstance(job, ImageJob) else "audio"): job for _, job, _ in item["jobs"]}
        views: dict[str, list] = {}
        if "image" in originals:
            views["image"] = image_views(originals["image"], cfg.image_views, rng, lambda r: image_job(cfg, None, r))
        if "audio" in originals:
            views["audio"] = audio_views(originals["audio"], cfg.audio_views, rng, cfg.audio_snr_db)
        seeds = iter(np.random.SeedSequence([seed, number, 1]).spawn(cfg.image_views + cfg.audio_views))
        for modality, jobs in views.items():
            suffix = "png" if modality == "image" else "wav"
            paths = [f"views/{row['id']}-{modality[0]}{k}.{suffix}" for k in range(len(jobs))]
            item["jobs"] += [(path, job, next(seeds)) for path, job in zip(paths, jobs, strict=True)]
            row.setdefault("views", {})[modality] = paths


def plan_robustness(cfg: DemoConfig, seed: int, scale: float = 1.0) -> list[dict]:
    """The clean robustness set (demo_views.py): test-split digits and held-out voices, no corruption.
    Below scale 1 it keeps that share of each digit's test images and of the voice variants."""
    images, pools = image_pools(cfg, np.random.default_rng(seed))  # the same pools plan() draws from
    per_digit = {d: max(2, round(len(pools[("test", d)]) * min(scale, 1.0))) for d in range(10)}
    sources = [(images[int(s)], d) for d in range(10) for s in pools[("test", d)][: per_digit[d]]]
    variants = max(1, round(len(CLEAN_VARIANTS) * min(scale, 1.0)))
    return robustness_items(sources, cfg.accents + cfg.test_accents, cfg.test_accents, seed, variants)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def _meta(source: int | None, audio: AudioJob | None, hint: str | None) -> dict:
    meta: dict = {"digits_index": source} if source is not None else {}
    if audio is not None:
        meta |= {k: v for k, v in asdict(audio).items() if k != "word"}
    return meta | ({"hint": hint} if hint else {})


def _synthesise(out_dir: Path, items: list[dict], workers: int, progress: bool) -> None:
    jobs = [(out_dir, it["jobs"]) for it in items]
    # forkserver, not fork: a caller with threads (a test run that served gRPC or drove a browser, a notebook)
    # forks a child whose threading state is half-copied, and its subprocess calls can spin forever. The
    # server process starts once from a clean state; the workers run only numpy/Pillow/soundfile/soxr and
    # espeak-ng. spawn where forkserver does not exist (Windows, and macOS before 3.14's default).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        done = pool.map(make_item, jobs, chunksize=8)
        for _ in tqdm(done, total=len(jobs), desc="tridigits: synthesising", unit="item", disable=not progress):
            pass


def build_tridigits(
    out_dir: Path | str,
    *,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
    config: DemoConfig | None = None,
    workers: int = 2,
) -> Path:
    """Write dataset.jsonl (with training views and video clips), robustness.jsonl, their media and README.md
    into out_dir; return the dataset manifest's path."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make espeak` (Debian package espeak-ng)")
    cfg = config or DemoConfig()
    out_dir = Path(out_dir)
    manifest = out_dir / "dataset.jsonl"
    for stale in (manifest, out_dir / ROBUSTNESS):
        stale.unlink(missing_ok=True)  # no stale manifest points at half-written media
    for sub in ("images", "audio", "views", "video", "clean"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / sub).mkdir(parents=True)
    items = plan(cfg, seed, scale)
    add_views(cfg, items, seed)
    clips = plan_clips(cfg, seed, scale)
    clean = plan_robustness(cfg, seed, scale) + (plan_clean_clips(cfg, seed, scale) if clips else [])
    _synthesise(out_dir, items + clips + clean, workers, progress)
    rows = [it["row"] for it in items + clips]
    write_readme(out_dir / "README.md", cfg, rows, seed=seed, scale=scale)
    _write_jsonl(out_dir / ROBUSTNESS, [it["row"] for it in clean])
    _write_jsonl(manifest, rows)
    return manifest
