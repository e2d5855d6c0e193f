"""`fusionserve classify|embed|zero-shot MODEL --image F --audio F --text T --video F`: the client as a command
(service/cli.py registers these verbs next to serve, check and optimize; only httpx is needed to run them;
numpy too for embed's --embedding-types)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from fusionserve_client.client import DEFAULT_URL, Client
from fusionserve_client.encodings import EMBEDDING_TYPES
from fusionserve_client.errors import FusionServeError
from fusionserve_client.results import Classification, Embedding
from fusionserve_client.search_results import ZeroShot

BAR_WIDTH = 30
SHOWN_VALUES = 6  # embed: how many leading values of each vector the table prints


def add_commands(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser("classify", help="classify one item on a running server (prints a table)")
    _common_arguments(classify)
    classify.add_argument("--top-k", type=int, default=5, help="how many labels (default 5)")
    classify.add_argument("--explain", action="store_true", help="add each modality's own top label")
    embed = commands.add_parser("embed", help="embed one item on a running server (prints dims and first values)")
    _common_arguments(embed)
    embed.add_argument("--dimensions", type=int, help="a prefix of the joint space (one the model was trained for)")
    embed.add_argument("--truncate", choices=["force"], help="force: any --dimensions, trained for or not")
    embed.add_argument("--embedding-types", type=_types, help=f"comma-separated, of {', '.join(EMBEDDING_TYPES)}")
    zero_shot = commands.add_parser("zero-shot", help="rank labels you name for one item (prints a table)")
    _common_arguments(zero_shot, segments=False)  # a video is one item here: the whole clip's embeddings
    zero_shot.add_argument("--labels", action="append", required=True, type=_split,
                           help="comma-separated candidate labels (repeat the option for more)")  # fmt: skip
    zero_shot.add_argument("--template", type=_template,
                           help='"a photo of {}" or, per modality, JSON: {"image": "a photo of {}"}')  # fmt: skip


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _types(value: str) -> list[str]:
    types = _split(value)
    unknown = [t for t in types if t not in EMBEDDING_TYPES]
    if not types or unknown:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(EMBEDDING_TYPES)}, got {value!r}")
    return types


def _template(value: str) -> str | dict:
    """A JSON object is a per-modality template; anything else is the template for every modality."""
    if value.lstrip().startswith("{") and value.rstrip().endswith("}"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value  # "{}" alone, or "{} in a photo {}": a template
        return parsed if isinstance(parsed, dict) else value
    return value


def _common_arguments(parser: argparse.ArgumentParser, segments: bool = True) -> None:
    parser.add_argument("model", help="the model's name, e.g. tridigits")
    parser.add_argument("--image", metavar="FILE", help="an image file (JPEG, PNG, WebP, BMP)")
    parser.add_argument("--audio", metavar="FILE", help="an audio file (WAV, FLAC, OGG)")
    parser.add_argument("--text", help="the text")
    per_segment = ": answered per segment" if segments else ""
    parser.add_argument("--video", metavar="FILE", help=f"a video file (MP4/MOV, WebM/MKV, AVI){per_segment}")
    if segments:
        parser.add_argument("--segment-s", type=float, help="video: segment length in seconds (default: the model's)")
        overlap = "video: overlap of segments in seconds (default: the model's)"
        parser.add_argument("--overlap-s", type=float, help=overlap)
    parser.add_argument("--version", help="a model version (default: the newest ready one)")
    parser.add_argument("--url", help=f"the server (default: $FUSIONSERVE_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", help="the server's API key (default: $FUSIONSERVE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """The exit status: 0 answered; 1 the server refused (its message printed) or could not be reached;
    2 a usage problem found before sending (no input, an unreadable file)."""
    if args.image is None and args.audio is None and args.text is None and args.video is None:
        return _fail("give at least one of --image, --audio, --text, --video", 2)
    url = args.url or os.environ.get("FUSIONSERVE_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("FUSIONSERVE_API_KEY") or None
    media = {"image": args.image, "audio": args.audio, "text": args.text, "video": args.video}
    try:
        with Client(url, api_key=api_key, timeout=args.timeout) as client:
            result = _call(client, args, media)
    except OSError as error:
        return _fail(f"cannot read {error.filename}: {error.strerror or error}", 2)
    except ImportError as error:  # --embedding-types decodes with numpy
        return _fail(str(error), 2)
    except FusionServeError as error:
        after = f" (retry after {error.retry_after:g} s)" if error.retry_after is not None else ""
        return _fail(f"{error}{after}", 1)
    print(json.dumps(dataclasses.asdict(result), indent=2, default=_as_list) if args.json else render(result))
    return 0


def _call(client: Client, args: argparse.Namespace, media: dict) -> Classification | Embedding | ZeroShot:
    if args.command == "zero-shot":
        labels = [label for group in args.labels for label in group]
        return client.zero_shot(args.model, labels, **media, template=args.template, version=args.version)
    options = {"version": args.version, "segment_s": args.segment_s, "overlap_s": args.overlap_s}
    if args.command == "classify":
        return client.classify(args.model, **media, **options, top_k=args.top_k, explain=args.explain)
    coding = {"dimensions": args.dimensions, "truncate": args.truncate, "embedding_types": args.embedding_types}
    return client.embed(args.model, **media, **options, **coding)


def _as_list(value):
    if hasattr(value, "tolist"):  # a numpy array (embedding_types)
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _fail(message: str, code: int) -> int:
    print(f"fusionserve: {message}", file=sys.stderr)
    return code


def render(result: Classification | Embedding | ZeroShot) -> str:
    head = f"{result.model} v{result.version} ({' + '.join(result.modalities)})"
    if isinstance(result, Embedding):
        return "\n".join([f"{head} dim {result.dim}", *_vector_rows(result), *_segment_vector_rows(result)])
    if isinstance(result, ZeroShot):
        how = "calibrated" if result.calibrated else "uncalibrated"
        return "\n".join([f"{head} zero-shot, {how} (temperature {result.temperature:g})", *_label_rows(result),
                          *_evidence_rows(result)])  # fmt: skip
    return "\n".join([head, *_label_rows(result), *_evidence_rows(result), *_segment_rows(result)])


def _label_rows(result: Classification | ZeroShot) -> list[str]:
    width = max(len("label"), *(len(row.label) for row in result.labels))
    lines = [f"  {'label':<{width}}  score"]
    for row in result.labels:
        lines.append(f"  {row.label:<{width}}  {row.score:.4f}  {_bar(row.score)}".rstrip())
    return lines


def _evidence_rows(result: Classification | ZeroShot) -> list[str]:
    if not result.evidence:
        return []
    lines = [f"evidence (every modality agrees: {'yes' if result.agreement else 'no'})"]
    width = max(len(e.label) for e in result.evidence)
    for e in result.evidence:
        verdict = "agrees" if e.agrees else "differs"
        lines.append(f"  {e.modality:<12}  {e.label:<{width}}  {e.score:.4f}  {verdict}")
    return lines


def _span(segment) -> str:
    return f"{segment.start_s:7.2f}-{segment.end_s:<7.2f}s"


def _segment_rows(result: Classification) -> list[str]:
    """A video's timeline: each segment's span, top label and score, and what it was fused from."""
    if not result.segments:
        return []
    width = max(len(s.top.label) for s in result.segments)
    lines = [f"segments ({len(result.segments)})"]
    for s in result.segments:
        slots = "+".join(s.modalities) or "no picture or sound"
        lines.append(f"  {_span(s)}  {s.top.label:<{width}}  {s.top.score:.4f}  {slots}")
    return lines


def _segment_vector_rows(result: Embedding) -> list[str]:
    if not result.segments:
        return []
    return [f"segments ({len(result.segments)})"] + [f"  {_span(s)}  {_leading(s.fused)}" for s in result.segments]


def _vector_rows(result: Embedding) -> list[str]:
    rows = {"fused": result.fused, **result.per_modality}
    lines = []
    for name, values in rows.items():
        if isinstance(values, dict):  # --embedding-types: a row per type
            lines += [f"  {name:<12}  {kind:<8}  {_leading(v)}" for kind, v in values.items()]
        else:
            lines.append(f"  {name:<12}  {_leading(values)}")
    return lines


def _leading(values) -> str:
    integers = getattr(getattr(values, "dtype", None), "kind", "f") in "iu"  # int8, uint8, packed bits
    shown = ", ".join(f"{int(v):+d}" if integers else f"{v:+.4f}" for v in values[:SHOWN_VALUES])
    return f"[{shown}{', ...' if len(values) > SHOWN_VALUES else ''}]"


def _bar(score: float) -> str:
    block = "█" if _can_print("█") else "#"  # a terminal without Unicode still gets a bar
    return block * round(max(0.0, min(1.0, score)) * BAR_WIDTH)


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
