"""Frozen-backbone features, computed from the server's own preprocessing and cached on disk.

An item's cache key is sha256(content bytes) (the image/audio file, or the text's UTF-8); the encoder id
names the backbone class, a digest of its weights and the preprocessing (spec + tokenizer file). So
re-training heads on the same data only reads small .npy files, and changing the weights, the image size
or the tokenizer can never return a stale feature.
Storage: training/data/feature_store.py.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from service.manifest import TextPreprocess
from service.preprocess import FusionError, decode_audio, decode_image, decode_text, encode_text, load_tokenizer
from service.preprocess.batch import collate as collate_arrays
from training.data.dataset import MAX_AUDIO_SECONDS, MAX_IMAGE_PIXELS, MAX_TEXT_CHARS, Example
from training.data.decode_pool import decoded_chunks, default_workers
from training.data.feature_store import FeatureCache
from training.data.onnx_runner import FeatureRunner
from training.data.specs import PreprocessSpecs, default_preprocess

_CHUNK_BATCHES = 8  # decode this many batches at a time, then sort them by length (bounded memory)


_TOKENIZERS: dict[tuple[Path, TextPreprocess], object] = {}


def _tokenizer(specs: PreprocessSpecs):
    key = (specs.tokenizer_path, specs.text)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(specs.tokenizer_path, specs.text)  # no padding, truncation as spec'd
    return _TOKENIZERS[key]


def content(example: Example, modality: str) -> bytes:
    """The bytes an item's cache key hashes: the media file, or the text as UTF-8."""
    value = getattr(example, modality)
    return value.encode("utf-8") if modality == "text" else Path(value).read_bytes()


_FILE_KEYS: dict[tuple[str, int, int], str] = {}


def file_key(path: Path | str) -> str:
    """sha256 of a media file, remembered while its size and mtime stay the same: the feature cache's keys and
    the checkpoint's dataset hash (training/provenance.py) read and hash each file once per process."""
    stat = Path(path).stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_KEYS:
        _FILE_KEYS[memo] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _FILE_KEYS[memo]


def content_key(example: Example, modality: str) -> str:
    """An item's cache key: sha256 of its media file, or of its text as UTF-8."""
    if modality == "text":
        return hashlib.sha256(example.text.encode("utf-8")).hexdigest()
    return file_key(getattr(example, modality))


def decode(data: bytes, modality: str, specs: PreprocessSpecs) -> tuple[np.ndarray, ...]:
    """Content bytes → the encoder's inputs for one item, exactly as the server computes them."""
    if modality == "image":
        return (decode_image(data, specs.image, max_pixels=MAX_IMAGE_PIXELS),)  # f32 [3,S,S]
    if modality == "text":
        text = decode_text(data, max_chars=MAX_TEXT_CHARS)
        return encode_text(text, _tokenizer(specs), specs.text)  # ids, mask: i64 [L]
    if modality == "audio":
        return (decode_audio(data, specs.audio, max_seconds=MAX_AUDIO_SECONDS),)  # f32 [n_mels,T]
    raise ValueError(f"unknown modality {modality!r}")


def raw_inputs(example: Example, modality: str, specs: PreprocessSpecs | None = None) -> tuple[np.ndarray, ...]:
    """One example's encoder inputs via service.preprocess (the server's own code)."""
    return decode(content(example, modality), modality, specs or default_preprocess())


def decoded_inputs(examples: list, modalities: list[str], specs: PreprocessSpecs | None = None) -> dict[str, list]:
    """{modality: [encoder inputs or None per example]}, decoded once with the server's preprocessing."""
    specs = specs or default_preprocess()
    return {m: [raw_inputs(e, m, specs) if getattr(e, m) is not None else None for e in examples] for m in modalities}


def collate(modality: str, items: Sequence[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    """The server's own batch collation (service.preprocess.batch) as torch tensors."""
    return tuple(torch.from_numpy(array) for array in collate_arrays(modality, items))


_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_digest(module: torch.nn.Module) -> str:
    """sha256 of the state dict, memoised until any tensor is modified in place (an optimiser step)."""
    state = module.state_dict()
    versions = tuple((name, t.data_ptr(), t._version) for name, t in state.items())
    memo = _DIGESTS.get(module)
    if memo is None or memo[0] != versions:
        digest = hashlib.sha256()
        for name, tensor in state.items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        memo = _DIGESTS[module] = (versions, digest.hexdigest())
    return memo[1]


def encoder_id(backbone: torch.nn.Module, modality: str, specs: PreprocessSpecs) -> str:
    """<modality>-<backbone class>-<weights digest>-<preprocessing digest>: what a cached feature depends on."""
    core = getattr(backbone, "backbone", backbone)  # EncoderWithProjection → its backbone (projection excluded)
    return f"{modality}-{type(core).__name__}-{_weights_digest(core)[:16]}-{preprocess_digest(modality, specs)[:8]}"


def preprocess_digest(modality: str, specs: PreprocessSpecs) -> str:
    """sha256 of the modality's preprocessing spec (and the tokenizer file for text)."""
    spec = getattr(specs, modality).model_dump_json().encode()
    if modality == "text":
        spec += specs.tokenizer_path.read_bytes()
    return hashlib.sha256(spec).hexdigest()


def _decoder(modality: str, specs: PreprocessSpecs) -> Callable:
    def decode_one(pair: tuple[str, Example]) -> tuple[str, tuple[np.ndarray, ...]]:
        key, example = pair
        try:
            return key, decode(content(example, modality), modality, specs)
        except FusionError as exc:
            raise ValueError(f"item {example.id}: {modality}: {exc.message}") from exc

    return decode_one


def _compute(
    todo: list[tuple[str, Example]],
    modality: str,
    run: Callable,
    specs: PreprocessSpecs,
    batch_size: int,
    bar: tqdm,
    workers: int = 0,
) -> dict[str, np.ndarray]:
    """Features of (key, example) pairs: decoded a chunk at a time (the next chunk in `workers` threads while this
    one is encoded), sorted by length, batched."""
    out: dict[str, np.ndarray] = {}
    step = batch_size * _CHUNK_BATCHES
    chunks = [todo[start : start + step] for start in range(0, len(todo), step)]
    for decoded in decoded_chunks(chunks, _decoder(modality, specs), workers):
        decoded.sort(key=lambda item: item[1][0].shape[-1])  # similar lengths together: less padding
        for b in range(0, len(decoded), batch_size):
            batch = decoded[b : b + batch_size]
            features = run(*collate(modality, [inputs for _, inputs in batch])).float().cpu().numpy()
            out.update((key, row) for (key, _), row in zip(batch, features, strict=True))
            bar.update(len(batch))
    return out


def _device_of(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def extract_features(
    examples: Sequence[Example],
    modality: str,
    backbone: torch.nn.Module,
    cache: FeatureCache | None,
    *,
    specs: PreprocessSpecs | None = None,
    batch_size: int = 32,
    progress: bool = True,
    engine: str = "auto",
    device: torch.device | None = None,
    decode_workers: int | None = None,
) -> np.ndarray:
    """Backbone features [N_present, F] (float32) of the examples that have `modality`, in order.

    `backbone` is a Backbone or an EncoderWithProjection (its `features()`: the projection is not applied).
    Cached features are read back; the rest are computed under torch.no_grad in eval mode and stored.
    engine: "auto" runs a frozen backbone on ONNX Runtime (exported once, checked against torch on the
    first batch, see onnx_runner), else torch; "torch" always uses torch; "onnx" tries ORT even if trainable.
    device: where the encoder runs (None: the CPU); decode_workers: threads decoding ahead of the encoder
    (None: decode_pool.default_workers for the device; 0: serial). The features do not depend on either.
    """
    specs = specs or default_preprocess()
    present = [example for example in examples if getattr(example, modality) is not None]
    encoder = encoder_id(backbone, modality, specs)
    keys = [content_key(example, modality) for example in present]
    unique = list(dict.fromkeys(keys))
    found = dict(zip(unique, cache.get_many(encoder, unique), strict=True)) if cache else dict.fromkeys(unique)
    first = dict(zip(reversed(keys), reversed(present), strict=True))  # key → its first example
    todo = [(key, first[key]) for key, value in found.items() if value is None]
    device = device or torch.device("cpu")
    workers = default_workers(device.type) if decode_workers is None else decode_workers
    run = FeatureRunner(backbone, modality, cache.root / encoder / "backbone.onnx" if cache else None, engine, device)
    was_training, home = backbone.training, _device_of(backbone)
    backbone.eval()
    try:
        if todo and device != home:
            backbone.to(device)  # torch's engine (and ORT's parity check) run where the features are wanted
        with torch.no_grad(), tqdm(total=len(todo), desc=f"features: {modality}", disable=not progress) as bar:
            computed = _compute(todo, modality, run, specs, batch_size, bar, workers)
    finally:
        backbone.train(was_training)
        backbone.to(home)
    for key, value in computed.items():
        if cache is not None:
            cache.put(encoder, key, value)
        found[key] = value
    if cache is not None:
        cache.flush()  # what was put is on disk (and visible to other processes) before this returns
    if not present:
        out_dim = getattr(getattr(backbone, "backbone", backbone), "out_dim", 0)
        return np.zeros((0, out_dim), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)
