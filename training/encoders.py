"""Which encoder serves each modality (issue 21): the packaged defaults, or for text any Hugging Face
directory of a family the server reproduces exactly. Pure file checks (no torch), so a config naming an
encoder the server cannot serve is refused before anything trains (docs/training.md, "Bring your encoders")."""

from __future__ import annotations

import json
from pathlib import Path

# AutoModel encoders whose fast tokenizer (tokenizer.json: normaliser, pre-tokeniser, model, post-processor with
# the special tokens) is the whole text preprocessing, and whose last_hidden_state the backbone pools
TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "mpnet", "distilbert", "electra")
TEXT_POOLING = ("mean", "cls")
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}  # positions start after padding_idx
DEFAULT_MAX_TOKENS = 128


def text_encoder_problem(directory: str) -> str | None:
    """Why the server could not serve this text encoder exactly (None: it can)."""
    path = Path(directory)
    if not (path / "config.json").is_file():
        return f"text_encoder: {directory} is not a Hugging Face model directory (no config.json)"
    if not (path / "tokenizer.json").is_file():
        return (f"text_encoder: {directory} has no tokenizer.json; the server reproduces fast tokenizers only "
                "(AutoTokenizer.from_pretrained(...).save_pretrained(dir) writes one)")  # fmt: skip
    model_type = _config(path).get("model_type")
    if model_type not in TEXT_MODEL_TYPES:
        return (f"text_encoder: {directory} is a {model_type!r} model; supported text encoders: "
                f"{', '.join(TEXT_MODEL_TYPES)}")  # fmt: skip
    return None


def text_max_tokens(directory: str) -> int:
    """Tokens per text: DEFAULT_MAX_TOKENS, or fewer where the model has fewer positions."""
    if not directory:
        return DEFAULT_MAX_TOKENS
    config = _config(Path(directory))
    positions = config.get("max_position_embeddings", DEFAULT_MAX_TOKENS) - POSITION_OFFSET.get(config["model_type"], 0)
    return max(2, min(DEFAULT_MAX_TOKENS, positions))


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))
