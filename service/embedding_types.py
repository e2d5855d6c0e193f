"""Smaller and compact embeddings, as every protocol serves them (docs/protocols.md, "Dimensions and encodings"):
a Matryoshka prefix re-normalised (`dimensions`), and the encodings of Cohere's `embedding_types` — float, int8
and uint8 scaled per dimension by the manifest's calibrated ranges, binary / ubinary as packed sign bits, 8
dimensions a byte — and OpenAI's `encoding_format: base64` (the raw little-endian bytes of whichever type).

numpy only: shared by the front-ends (the protocols), training/export.py (the retrieval figures per encoding) and
the benchmarks, so an encoding is computed one way everywhere.
"""

from __future__ import annotations

import numpy as np
import pybase64

from service.errors import InvalidInput
from service.joint_space import QuantizationRanges
from service.manifest import Manifest

EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
DTYPES = {"float": "<f4", "int8": "i1", "uint8": "u1", "binary": "i1", "ubinary": "u1"}  # what each is on the wire
SCALED = ("int8", "uint8")  # need the manifest's ranges
TRUNCATE_FORCE = "force"


def resolve_dimensions(
    manifest: Manifest, dimensions: int | None, truncate: str | None, *, field: str = "dimensions",
    truncate_field: str = "truncate",
) -> int:  # fmt: skip
    """The prefix length a request gets: its `dimensions` if the bundle was trained for it (or `truncate` is
    "force"), the full embedding_dim when it asks for none; a 422 naming the field and the supported dims."""
    full = manifest.embedding_dim
    if truncate is not None and truncate != TRUNCATE_FORCE:
        raise InvalidInput(f"{truncate_field} must be {TRUNCATE_FORCE!r} when given (got {truncate!r})", truncate_field)
    if dimensions is None:
        return full
    supported = manifest.joint_space.supported_dims(full)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= full:
        raise InvalidInput(f"{field} must be an integer in [1, {full}] (got {dimensions!r})", field)
    if dimensions not in supported and truncate != TRUNCATE_FORCE:
        raise InvalidInput(
            f"{field} {dimensions} is not one model {manifest.name!r} version {manifest.version!r} was trained "
            f"for (supported: {', '.join(map(str, supported))}); send {truncate_field}={TRUNCATE_FORCE!r} to "
            "truncate anyway",
            field,
        )
    return dimensions


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """[..., D] unit-norm embeddings → [..., dim] prefixes, re-normalised (an all-zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if dim >= vectors.shape[-1]:
        return vectors
    prefix = vectors[..., :dim]
    norms = np.linalg.norm(prefix, axis=-1, keepdims=True)
    return (prefix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def check_embedding_types(manifest: Manifest, types: list[str] | None, dim: int, *, field: str = "embedding_types"):
    """The requested types, in order, each once: a 422 naming the field for an unknown or repeated type, or for
    int8 / uint8 on a bundle without calibrated ranges for `dim` (nor a larger dim to take a prefix of)."""
    types = list(types or ["float"])
    if not types:
        raise InvalidInput(f"{field} must name at least one of {', '.join(EMBEDDING_TYPES)}", field)
    for index, kind in enumerate(types):
        where = f"{field}[{index}]"
        if kind not in EMBEDDING_TYPES:
            raise InvalidInput(f"{where} {kind!r} is not one of {', '.join(EMBEDDING_TYPES)}", where)
        if kind in types[:index]:
            raise InvalidInput(f"{where} {kind!r} is named twice", where)
        if kind in SCALED and ranges_for(manifest, dim) is None:
            raise InvalidInput(
                f"{where} {kind!r} needs calibrated ranges, which model {manifest.name!r} version "
                f"{manifest.version!r} does not have (retrain or re-export it with this release)",
                where,
            )
    return types


def ranges_for(manifest: Manifest, dim: int) -> QuantizationRanges | None:
    """The calibrated ranges of `dim`; for a forced dim without its own, the first `dim` of the next larger
    calibrated prefix's (a re-normalised shorter prefix has larger values: clipped at the ends)."""
    space = manifest.joint_space
    if (own := space.ranges(dim)) is not None:
        return own
    larger = sorted(int(key) for key in space.quantization if int(key) > dim)
    if not larger:
        return None
    wider = space.ranges(larger[0])
    return QuantizationRanges(min=wider.min[:dim], max=wider.max[:dim])


def quantize(vectors: np.ndarray, kind: str, ranges: QuantizationRanges | None = None) -> np.ndarray:
    """[N, d] float32 → the encoding's array: float [N,d] f32; int8 [N,d] i8 / uint8 [N,d] u8 (the range of each
    dimension in 256 steps, clipped); binary [N,ceil(d/8)] i8 / ubinary u8 (sign bits, packed big-endian, the
    last byte zero-padded; binary is ubinary - 128, as Cohere and sentence-transformers send it)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if kind == "float":
        return vectors
    if kind in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=-1)  # [N, ceil(d/8)] u8
        return (packed.astype(np.int16) - 128).astype(np.int8) if kind == "binary" else packed
    if kind not in SCALED or ranges is None:
        raise ValueError(f"quantize: {kind!r} needs ranges" if kind in SCALED else f"unknown type {kind!r}")
    low, high = np.asarray(ranges.min, np.float32), np.asarray(ranges.max, np.float32)
    step = np.where(high > low, (high - low) / 255.0, 1.0)
    levels = np.clip(np.rint((vectors - low) / step), 0, 255)  # [N,d] in 0..255
    return (levels - 128).astype(np.int8) if kind == "int8" else levels.astype(np.uint8)


def dequantize(array: np.ndarray, kind: str, ranges: QuantizationRanges | None = None) -> np.ndarray:
    """The inverse of `quantize` for int8 / uint8 (each level's centre), float as is; binary → ±1 per bit."""
    if kind == "float":
        return np.asarray(array, np.float32)
    if kind in ("binary", "ubinary"):
        packed = (np.asarray(array).astype(np.int16) + (128 if kind == "binary" else 0)).astype(np.uint8)
        return np.unpackbits(packed, axis=-1).astype(np.float32) * 2 - 1
    low, high = np.asarray(ranges.min, np.float32), np.asarray(ranges.max, np.float32)
    levels = np.asarray(array).astype(np.float32) + (128 if kind == "int8" else 0)
    return low + levels * np.where(high > low, (high - low) / 255.0, 0.0)


def to_base64(array: np.ndarray, kind: str = "float") -> str:
    """One row's raw little-endian bytes, base64 (OpenAI's float32 base64; the same for every type)."""
    return pybase64.b64encode(np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()).decode("ascii")


def encode_rows(vectors: np.ndarray, kinds: list[str], ranges: QuantizationRanges | None, encoding_format: str):
    """[N, d] → per row, {kind: numpy row or base64 str} (orjson writes numpy rows as JSON arrays)."""
    encoded = {kind: quantize(vectors, kind, ranges) for kind in kinds}
    if encoding_format == "base64":
        return [{kind: to_base64(encoded[kind][i], kind) for kind in kinds} for i in range(len(vectors))]
    return [{kind: encoded[kind][i] for kind in kinds} for i in range(len(vectors))]


def hamming_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ubinary codes a [N,B], b [M,B] → [N,M] number of equal bits (the higher the closer)."""
    xor = np.bitwise_xor(a[:, None, :], b[None, :, :])  # [N,M,B]
    return (a.shape[-1] * 8 - np.unpackbits(xor, axis=-1).sum(axis=-1)).astype(np.int32)
