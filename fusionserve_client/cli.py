"""`fusionserve classify|embed MODEL --image F --audio F --text T`: the client as a command (service/cli.py
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
    parser.add_argument("--version", help="a model version (default: the newest ready one)")
    parser.add_argument("--url", help=f"the server (default: $FUSIONSERVE_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", help="the server's API key (default: $FUSIONSERVE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """The exit status: 0 answered; 1 the server refused (its message printed) or could not be reached;
    2 a usage problem found before sending (no input, an unreadable file)."""
    if args.image is None and args.audio is None and args.text is None:
        return _fail("give at least one of --image, --audio, --text", 2)
    url = args.url or os.environ.get("FUSIONSERVE_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("FUSIONSERVE_API_KEY") or None
    media = {"image": args.image, "audio": args.audio, "text": args.text}
    try:
        with Client(url, api_key=api_key, timeout=args.timeout) as client:
            if args.command == "classify":
                result = client.classify(args.model, **media, top_k=args.top_k, version=args.version,
                                         explain=args.explain)  # fmt: skip
            else:
                result = client.embed(args.model, **media, version=args.version)
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
        return "\n".join([f"{head} dim {result.dim}", *_vector_rows(result)])
    return "\n".join([head, *_label_rows(result), *_evidence_rows(result)])


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
        lines.append(f"  {e.modality:<5}  {e.label:<{width}}  {e.score:.4f}  {verdict}")
    return lines


def _vector_rows(result: Embedding) -> list[str]:
    rows = {"fused": result.fused, **result.per_modality}
    return [f"  {name:<5}  {_leading(values)}" for name, values in rows.items()]


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
