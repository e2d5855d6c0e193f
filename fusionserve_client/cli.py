"""`fusionserve classify|embed MODEL --image F --audio F --text T --video F`: the client as a command (service/cli.py
registers these verbs next to serve, check and optimize; only httpx is needed to run them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from fusionserve_client.client import DEFAULT_URL, Client
from fusionserve_client.errors import FusionServeError
from fusionserve_client.results import Classification, Embedding

BAR_WIDTH = 30
SHOWN_VALUES = 6  # embed: how many leading values of each vector the table prints


def add_commands(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser("classify", help="classify one item on a running server (prints a table)")
    _common_arguments(classify)
    classify.add_argument("--top-k", type=int, default=5, help="how many labels (default 5)")
    classify.add_argument("--explain", action="store_true", help="add each modality's own top label")
    embed = commands.add_parser("embed", help="embed one item on a running server (prints dims and first values)")
    _common_arguments(embed)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model's name, e.g. tridigits")
    parser.add_argument("--image", metavar="FILE", help="an image file (JPEG, PNG, WebP, BMP)")
    parser.add_argument("--audio", metavar="FILE", help="an audio file (WAV, FLAC, OGG)")
    parser.add_argument("--text", help="the text")
    parser.add_argument("--video", metavar="FILE", help="a video file (MP4/MOV, WebM/MKV, AVI): answered per segment")
    parser.add_argument("--segment-s", type=float, help="video: segment length in seconds (default: the model's)")
    parser.add_argument("--overlap-s", type=float, help="video: overlap of segments in seconds (default: the model's)")
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
    options = {"version": args.version, "segment_s": args.segment_s, "overlap_s": args.overlap_s}
    try:
        with Client(url, api_key=api_key, timeout=args.timeout) as client:
            if args.command == "classify":
                result = client.classify(args.model, **media, **options, top_k=args.top_k, explain=args.explain)
            else:
                result = client.embed(args.model, **media, **options)
    except OSError as error:
        return _fail(f"cannot read {error.filename}: {error.strerror or error}", 2)
    except FusionServeError as error:
        after = f" (retry after {error.retry_after:g} s)" if error.retry_after is not None else ""
        return _fail(f"{error}{after}", 1)
    print(json.dumps(dataclasses.asdict(result), indent=2) if args.json else render(result))
    return 0


def _fail(message: str, code: int) -> int:
    print(f"fusionserve: {message}", file=sys.stderr)
    return code


def render(result: Classification | Embedding) -> str:
    head = f"{result.model} v{result.version} ({' + '.join(result.modalities)})"
    if isinstance(result, Embedding):
        return "\n".join([f"{head} dim {result.dim}", *_vector_rows(result), *_segment_vector_rows(result)])
    return "\n".join([head, *_label_rows(result), *_evidence_rows(result), *_segment_rows(result)])


def _label_rows(result: Classification) -> list[str]:
    width = max(len("label"), *(len(row.label) for row in result.labels))
    lines = [f"  {'label':<{width}}  score"]
    for row in result.labels:
        lines.append(f"  {row.label:<{width}}  {row.score:.4f}  {_bar(row.score)}".rstrip())
    return lines


def _evidence_rows(result: Classification) -> list[str]:
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
    return [f"  {name:<12}  {_leading(values)}" for name, values in rows.items()]


def _leading(values: list[float]) -> str:
    shown = ", ".join(f"{v:+.4f}" for v in values[:SHOWN_VALUES])
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
