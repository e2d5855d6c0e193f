"""The user's dataset: a JSONL manifest, one item per line, validated in full before any training starts.

Each line is a JSON object with `id`, `split` (train / val / test), `label`, and any non-empty subset of `image`
(path), `text` (string), `audio` (path) and `video` (path); paths are relative to the manifest's directory. A video
item may annotate its segments, `segments: [{"start_s", "end_s", "label"}]` (a clip whose parts differ, e.g. two
digits in turn): each training segment takes the label of the annotation overlapping it most, else the item's
`label` (training/data/video_rows.py). An optional `meta` object is carried along (evaluation groups a robustness
set by `meta.group`); an optional `views` object lists extra renderings of the item's media for training,
`{"image": [paths], "audio": [paths]}` (augmentation whose features the cache stores like any other file). Any
other key is reported (catches typos such as "imgae"). Media are decoded with the server's own code
(service.preprocess), so a file the server would reject is reported here, with the server's reason, instead of
failing half-way through training.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from service.manifest import MODALITIES, AudioPreprocess, ImagePreprocess
from service.preprocess import FusionError, decode_audio, decode_image, decode_text
from training.data.video_decode import check_video
from training.errors import UserError

SPLITS = ("train", "val", "test")
MEDIA = ("image", "audio", "video")
VIEWS = ("image", "audio")  # the media that may list training views
KEYS = frozenset({"id", "split", "label", *MODALITIES, "meta", "views", "segments"})
# The server's default request limits (service/settings.py): training accepts what serving accepts.
MAX_IMAGE_PIXELS = 40_000_000
MAX_AUDIO_SECONDS = 30.0
MAX_TEXT_CHARS = 4096
# Decoding checks readability only: a small image size keeps it cheap (the header and pixel checks still run).
_CHECK_IMAGE = ImagePreprocess(size=16)
_CHECK_AUDIO = AudioPreprocess()


@dataclass(frozen=True)
class Example:
    id: str
    split: str
    label: str
    image: Path | None = None
    text: str | None = None
    audio: Path | None = None
    video: Path | None = None  # a clip (MP4/WebM/...): one training row per segment (training/data/video_rows.py)
    # annotated segments (start_s, end_s, label), for clips whose segments differ; () = the label throughout
    segments: tuple[tuple[float, float, str], ...] = ()
    views: dict[str, tuple[Path, ...]] = field(default_factory=dict, compare=False)  # modality → renderings
    meta: dict = field(default_factory=dict, compare=False)

    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]


class DatasetError(UserError, ValueError):
    """Every problem of a manifest, one string per problem ("line 7: missing file x.wav")."""

    def __init__(self, manifest: Path | str, problems: list[str]):
        self.manifest = Path(manifest)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems)
        super().__init__(f"{self.manifest}: {len(self.problems)} problem(s):\n  {shown}")


def _check_fields(obj: dict) -> list[str]:
    problems = [f"unknown key {key!r}" for key in sorted(set(obj) - KEYS)]
    if not isinstance(obj.get("id"), str) or not obj["id"].strip():
        problems.append("id missing (a non-empty string is required)")
    split = obj.get("split")
    if split is None:
        problems.append(f"split missing (one of {', '.join(SPLITS)})")
    elif split not in SPLITS:
        problems.append(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    label = obj.get("label")
    if label is None or isinstance(label, bool) or not isinstance(label, str | int) or not str(label).strip():
        problems.append("label missing (a non-empty string or an integer is required)")
    if not any(obj.get(m) is not None for m in MODALITIES):
        problems.append(f"no modality: give at least one of {', '.join(MODALITIES)}")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        problems.append("meta must be a JSON object")
    return problems


def _view_paths(obj: dict, root: Path) -> tuple[dict[str, tuple[Path, ...]], list[str]]:
    """`views`: {"image"|"audio": [path, ...]} for media the item has → (paths, problems)."""
    views = obj.get("views", {})
    if not isinstance(views, dict):
        return {}, ["views must be a JSON object {modality: [paths]}"]
    out, problems = {}, []
    for modality, paths in views.items():
        if modality not in VIEWS or obj.get(modality) is None:
            problems.append(f"views.{modality}: views are for the item's own image or audio")
        elif not isinstance(paths, list):
            problems.append(f"views.{modality} must be a list of paths")
        else:
            found = [_media_path(p, f"views.{modality}", root) for p in paths]
            problems += [p for _, bad in found for p in bad]
            out[modality] = tuple(path for path, _ in found if path is not None)
    return out, problems


def _segments(obj: dict) -> tuple[tuple[tuple[float, float, str], ...], list[str]]:
    """`segments`: [{"start_s", "end_s", "label"}] of a video item → ((start, end, label), ...), problems."""
    value = obj.get("segments")
    if value is None:
        return (), []
    if obj.get("video") is None:
        return (), ["segments annotate a video: this item has none"]
    if not isinstance(value, list):
        return (), ["segments must be a list of {start_s, end_s, label}"]
    out, problems = [], []
    for n, seg in enumerate(value):
        ok = isinstance(seg, dict) and set(seg) == {"start_s", "end_s", "label"}
        times = [seg.get(k) for k in ("start_s", "end_s")] if ok else []
        ok = ok and all(isinstance(t, int | float) and not isinstance(t, bool) for t in times)
        if not ok or not 0 <= times[0] < times[1] or not str(seg["label"]).strip():
            problems.append(f"segments[{n}] must be {{start_s, end_s, label}} with 0 <= start_s < end_s")
        else:
            out.append((float(times[0]), float(times[1]), str(seg["label"])))
    return tuple(out), problems


def _check_text(text: object) -> list[str]:
    if text is None:
        return []
    try:
        decode_text(text, max_chars=MAX_TEXT_CHARS)
    except FusionError as exc:
        return [f"bad text: {exc.message}"]
    return []


def _media_path(value: object, modality: str, root: Path) -> tuple[Path | None, list[str]]:
    if value is None:
        return None, []
    if not isinstance(value, str) or not value.strip():
        return None, [f"{modality} must be a non-empty path string"]
    path = root / value
    if not path.is_file():
        return None, [f"missing file {value}" + (" (a directory)" if path.is_dir() else "")]
    return path, []


def media_problem(modality: str, path: Path) -> str | None:
    """None when the server would accept the file, else the reason it would not."""
    try:
        data = path.read_bytes()
        if modality == "image":
            decode_image(data, _CHECK_IMAGE, max_pixels=MAX_IMAGE_PIXELS)
        elif modality == "video":
            check_video(data)
        else:
            decode_audio(data, _CHECK_AUDIO, max_seconds=MAX_AUDIO_SECONDS)
    except FusionError as exc:
        return f"unreadable {modality} {path.name}: {exc.message}"
    except OSError as exc:
        return f"unreadable {modality} {path.name}: {exc.strerror or exc}"
    return None


def _parse_line(raw: str, root: Path) -> tuple[object, Example | None, list[str], dict[str, Path]]:
    """One manifest line → (its id, example or None, problems, media paths still to decode)."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, None, [f"invalid JSON: {exc.msg} (column {exc.colno})"], {}
    if not isinstance(obj, dict):
        return None, None, [f"expected a JSON object, got {type(obj).__name__}"], {}
    views, view_problems = _view_paths(obj, root)
    segments, segment_problems = _segments(obj)
    problems = _check_fields(obj) + _check_text(obj.get("text")) + view_problems + segment_problems
    media: dict[str, Path] = {}
    for modality in MEDIA:
        path, bad = _media_path(obj.get(modality), modality, root)
        problems += bad
        if path is not None:
            media[modality] = path
    if problems:
        return obj.get("id"), None, problems, media
    example = Example(id=obj["id"], split=obj["split"], label=str(obj["label"]), text=obj.get("text"), **media,
                      segments=segments, views=views, meta=obj.get("meta", {}))  # fmt: skip
    return example.id, example, [], media


def _read_lines(manifest: Path) -> list[tuple[int, str]]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(manifest, [f"cannot read the manifest: {exc}"]) from exc
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def load_dataset(manifest: Path | str, *, check_media: bool = True, threads: int = 2) -> list[Example]:
    """Parse and validate a JSONL manifest; raise DatasetError listing every bad line.

    check_media=False skips decoding the media (existence is still checked).
    """
    manifest = Path(manifest)
    lines = _read_lines(manifest)
    problems: dict[int, list[str]] = {}
    examples: list[Example] = []
    to_decode: list[tuple[int, str, Path]] = []
    first_seen: dict[str, int] = {}
    for number, raw in lines:
        item_id, example, bad, media = _parse_line(raw, manifest.parent)
        problems[number] = bad
        to_decode += [(number, modality, path) for modality, path in media.items()]
        if isinstance(item_id, str) and item_id.strip():
            if item_id in first_seen:
                bad.append(f"duplicate id {item_id!r} (first on line {first_seen[item_id]})")
            first_seen.setdefault(item_id, number)
        if example is not None:
            examples.append(example)
    if check_media:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            reasons = pool.map(lambda item: media_problem(item[1], item[2]), to_decode)
            for (number, _, _), reason in zip(to_decode, reasons, strict=True):
                if reason:
                    problems[number].append(reason)
    report = [f"line {n}: {p}" for n in sorted(problems) for p in problems[n]]
    if not lines:
        report.append("the manifest holds no items")
    if report:
        raise DatasetError(manifest, report)
    return examples


def labels_of(examples: list[Example]) -> list[str]:
    """Sorted unique labels (the items' and their annotated segments'): the class order of the model."""
    return sorted({e.label for e in examples} | {label for e in examples for _, _, label in e.segments})
