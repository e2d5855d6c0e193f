"""tridigits: a deterministic tri-modal digit dataset in the spirit of AV-MNIST.

image = a real handwritten digit (scikit-learn's load_digits) upscaled and corrupted (blur, occlusion,
noise); audio = the digit's English word spoken by espeak-ng over several accents, voice variants, speeds
and pitches, in coloured noise at a random SNR; text = a truthful hint (numeral, word in one of seven
languages, or a partial hint naming 2–5 digits), maybe with typos, or absent. Some items also lack the
image or the audio, so every modality subset occurs. Test voices (accent+variant) never occur in train or
val, and each split draws its images from its own disjoint share of load_digits.

Every corruption strength is a DemoConfig field: build_tridigits(..., config=DemoConfig(audio_snr_db=...)).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.data.demo_media import AudioJob, ImageJob, make_item
from training.data.demo_readme import write_readme
from training.data.demo_text import WORDS, make_hint
from training.data.demo_views import CLEAN_VARIANTS, audio_views, image_views, robustness_items

SPLITS = ("train", "val", "test")
ROBUSTNESS = "robustness.jsonl"


@dataclass(frozen=True)
class DemoConfig:
    n_items: int = 4000  # at scale 1.0
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    # modality presence (an item never loses all three)
    image_absent_prob: float = 0.15
    audio_absent_prob: float = 0.15
    text_absent_prob: float = 0.25
    # image corruption; (lo, hi) pairs are drawn uniformly per item
    image_size: int = 64
    image_blur: tuple[float, float] = (0.0, 4.0)  # Gaussian radius, pixels at image_size
    image_noise: tuple[float, float] = (0.05, 0.45)  # noise std, fraction of full scale
    image_occlusion_prob: float = 0.6
    image_patches: tuple[int, int] = (1, 3)  # patches per occluded image
    image_patch_size: tuple[float, float] = (0.15, 0.45)  # side, fraction of the image
    image_shift: float = 0.08  # max translation, fraction of the side
    image_contrast: tuple[float, float] = (0.35, 1.0)  # ink darkness
    # audio: voice = accent + variant; the test split uses only held-out voices
    accents: tuple[str, ...] = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    test_accents: tuple[str, ...] = ("en-029", "en-us-nyc")
    variants: tuple[str, ...] = ("m1", "m2", "m3", "m5", "m6", "m7", "f1", "f2", "f3", "f5", "klatt", "croak")
    test_variants: tuple[str, ...] = ("m4", "m8", "f4", "klatt3")
    speeds: tuple[int, ...] = (120, 145, 170, 200)  # words per minute
    pitches: tuple[int, ...] = (25, 40, 55, 70)
    audio_snr_db: tuple[float, float] = (-12.0, 6.0)
    audio_noise_colours: tuple[float, ...] = (0.0, 1.0, 2.0)  # white, pink, brown
    audio_silence_s: tuple[float, float] = (0.05, 0.5)  # before and after the word
    # text hints (truthful; ambiguity comes from partial hints, typos and absence)
    text_partial_share: float = 0.5
    text_numeral_share: float = 0.2  # of exact hints
    text_typo_prob: float = 0.3
    text_max_typos: int = 2
    partial_set_sizes: tuple[int, int] = (2, 5)
    # training views per train item (demo_views.py): extra renderings of its image and its spoken word
    image_views: int = 9
    audio_views: int = 2


def voices(cfg: DemoConfig, split: str) -> list[str]:
    """espeak-ng voices of a split: train/val use seen accents x seen variants; test every other pair."""
    all_accents, all_variants = cfg.accents + cfg.test_accents, cfg.variants + cfg.test_variants
    pairs = [(a, v) for a in all_accents for v in all_variants]
    seen = [(a, v) for a, v in pairs if a in cfg.accents and v in cfg.variants]
    chosen = [p for p in pairs if p not in seen] if split == "test" else seen
    return [f"{a}+{v}" for a, v in chosen]


def _split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    return [n_train, n_val, n - n_train - n_val]


def _image_pools(cfg: DemoConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """load_digits images and, per split and digit, that split's own disjoint share of them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pools: dict[tuple[str, int], np.ndarray] = {}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == d))
        bounds = np.cumsum(_split_counts(idx.size, cfg.split_fractions))[:2]
        for split, part in zip(SPLITS, np.split(idx, bounds), strict=True):
            pools[(split, d)] = part
    return digits.images, pools


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _image_job(cfg: DemoConfig, pixels: np.ndarray, rng: np.random.Generator) -> ImageJob:
    n_patches = int(rng.integers(cfg.image_patches[0], cfg.image_patches[1] + 1))
    if rng.random() >= cfg.image_occlusion_prob:
        n_patches = 0
    patches = []
    for _ in range(n_patches):  # square patches (x, y, side, side, grey), anywhere on the image
        x, y, side = float(rng.uniform(0, 0.8)), float(rng.uniform(0, 0.8)), _uniform(rng, cfg.image_patch_size)
        patches.append((x, y, side, side, float(rng.uniform(0.3, 1.0))))
    return ImageJob(
        pixels=pixels,
        size=cfg.image_size,
        blur=_uniform(rng, cfg.image_blur),
        noise=_uniform(rng, cfg.image_noise),
        patches=tuple(patches),
        shift=(float(rng.uniform(-1, 1) * cfg.image_shift), float(rng.uniform(-1, 1) * cfg.image_shift)),
        contrast=_uniform(rng, cfg.image_contrast),
    )


def _audio_job(cfg: DemoConfig, digit: int, split: str, rng: np.random.Generator) -> AudioJob:
    pool = voices(cfg, split)
    return AudioJob(
        word=WORDS["en"][digit],
        voice=pool[rng.integers(len(pool))],
        speed=int(rng.choice(cfg.speeds)),
        pitch=int(rng.choice(cfg.pitches)),
        snr_db=round(_uniform(rng, cfg.audio_snr_db), 2),
        noise_colour=float(rng.choice(cfg.audio_noise_colours)),
        lead_s=round(_uniform(rng, cfg.audio_silence_s), 3),
        tail_s=round(_uniform(rng, cfg.audio_silence_s), 3),
    )


def _presence(cfg: DemoConfig, rng: np.random.Generator) -> tuple[bool, bool, bool]:
    absent = (cfg.image_absent_prob, cfg.text_absent_prob, cfg.audio_absent_prob)
    image, text, audio = (bool(rng.random() >= p) for p in absent)
    return image or not (text or audio), text, audio


def plan(cfg: DemoConfig, seed: int, scale: float) -> list[dict]:
    """Every item's row, media jobs and seed; deterministic in (cfg, seed, scale)."""
    rng = np.random.default_rng(seed)
    images, pools = _image_pools(cfg, rng)
    n = max(30, round(cfg.n_items * scale))
    labels = np.arange(n) % 10
    splits = np.empty(n, dtype=object)
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        splits[idx] = np.repeat(SPLITS, _split_counts(idx.size, cfg.split_fractions))
    order = rng.permutation(n)
    items = []
    for number, i in enumerate(order):
        digit, split = int(labels[i]), str(splits[i])
        has_image, has_text, has_audio = _presence(cfg, rng)
        source = int(rng.choice(pools[(split, digit)]))
        row = {"id": f"td{number:05d}", "split": split, "label": str(digit)}
        image = _image_job(cfg, images[source], rng) if has_image else None
        audio = _audio_job(cfg, digit, split, rng) if has_audio else None
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
            views["image"] = image_views(originals["image"], cfg.image_views, rng, lambda r: _image_job(cfg, None, r))
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
    images, pools = _image_pools(cfg, np.random.default_rng(seed))  # the same pools plan() draws from
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
    """Write dataset.jsonl (with training views), robustness.jsonl, their media and README.md into out_dir;
    return the dataset manifest's path."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make espeak` (Debian package espeak-ng)")
    cfg = config or DemoConfig()
    out_dir = Path(out_dir)
    manifest = out_dir / "dataset.jsonl"
    for stale in (manifest, out_dir / ROBUSTNESS):
        stale.unlink(missing_ok=True)  # no stale manifest points at half-written media
    for sub in ("images", "audio", "views", "clean"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / sub).mkdir(parents=True)
    items = plan(cfg, seed, scale)
    add_views(cfg, items, seed)
    clean = plan_robustness(cfg, seed, scale)
    _synthesise(out_dir, items + clean, workers, progress)
    rows = [it["row"] for it in items]
    write_readme(out_dir / "README.md", cfg, rows, seed=seed, scale=scale)
    _write_jsonl(out_dir / ROBUSTNESS, [it["row"] for it in clean])
    _write_jsonl(manifest, rows)
    return manifest
