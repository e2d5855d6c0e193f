"""Embeddings as the server sends them → numpy (docs/client.md, "Dimensions and encodings"; docs/search.md): a
JSON list or a base64 string of the type's raw little-endian bytes, one per requested type: float → float32,
int8 → int8, uint8 → uint8, binary → int8 and ubinary → uint8 (both packed sign bits, 8 dimensions a byte,
big-endian bit order as numpy.packbits).

numpy is imported inside the functions: a caller who asks for no encoding gets lists and needs only httpx.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
DTYPES = {"float": "<f4", "int8": "i1", "uint8": "u1", "binary": "i1", "ubinary": "u1"}
ENCODING_FORMATS = ("float", "base64")
PACKED = ("binary", "ubinary")


def _numpy():
    try:
        import numpy
    except ImportError as error:  # pragma: no cover - numpy is in every test environment
        raise ImportError("decoding embedding_types / encoding_format needs numpy: pip install numpy") from error
    return numpy


@dataclass(frozen=True)
class Encoding:
    """What an embed request asked for, and so how its vectors decode. `types` None: the plain float answer
    (lists, or float32 arrays with encoding_format); `single`: the caller named one type as a str (one array)."""

    dimensions: int | None = None
    truncate: str | None = None
    types: tuple[str, ...] | None = None
    encoding_format: str | None = None
    single: bool = False

    @property
    def as_numpy(self) -> bool:
        return self.types is not None or self.encoding_format is not None

    def params(self) -> dict:
        """The v1 embed query options (docs/protocols.md: `embedding_types` comma-separated)."""
        values = {
            "dimensions": self.dimensions,
            "truncate": self.truncate,
            "embedding_types": None if self.types is None else ",".join(self.types),
            "encoding_format": self.encoding_format,
        }
        return {k: v for k, v in values.items() if v is not None}

    def decode(self, value: Any) -> Any:
        """One vector value of the answer → a list (no encoding asked), an array, or a dict type → array."""
        if not self.as_numpy:
            return list(value)
        if self.types is None:
            return decode_vector(value, "float")
        if not isinstance(value, dict):
            raise ValueError(f"expected an object keyed by {', '.join(self.types)}, got {type(value).__name__}")
        arrays = {kind: decode_vector(value[kind], kind) for kind in self.types}
        return arrays[self.types[0]] if self.single else arrays


def encoding(
    dimensions: int | None = None,
    truncate: str | None = None,
    embedding_types: str | Sequence[str] | None = None,
    encoding_format: str | None = None,
) -> Encoding:
    """The caller's options, checked before any request (the server checks them again, naming its fields)."""
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise ValueError(f"dimensions must be a positive int, got {dimensions!r}")
    if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
        raise ValueError(f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, got {encoding_format!r}")
    single = isinstance(embedding_types, str)
    types = None if embedding_types is None else ((embedding_types,) if single else tuple(embedding_types))
    if types is not None:
        unknown = [t for t in types if t not in EMBEDDING_TYPES]
        if not types or unknown or len(set(types)) != len(types):
            raise ValueError(f"embedding_types: each of {', '.join(EMBEDDING_TYPES)} at most once, got {types}")
    return Encoding(dimensions, truncate, types, encoding_format, single)


def decode_vector(value: Any, kind: str = "float"):
    """A JSON list or a base64 string → the type's numpy array (1-d)."""
    np = _numpy()
    dtype = np.dtype(DTYPES[kind])
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), dtype=dtype).astype(dtype.newbyteorder("="))
    return np.asarray(value, dtype=dtype.newbyteorder("="))


def unpack_bits(packed, kind: str = "ubinary", dim: int | None = None):
    """binary / ubinary codes [..., ceil(d/8)] → ±1 float32 [..., d] (the first `dim` bits; the last byte's
    padding dropped): the sign of each dimension, for a dot product against float queries."""
    if kind not in PACKED:
        raise ValueError(f"unpack_bits takes binary or ubinary codes, got {kind!r}")
    np = _numpy()
    codes = np.asarray(packed).astype(np.int16) + (128 if kind == "binary" else 0)
    bits = np.unpackbits(codes.astype(np.uint8), axis=-1)
    return (bits[..., :dim] if dim is not None else bits).astype(np.float32) * 2 - 1


def hamming_similarity(a, b, kind: str = "ubinary"):
    """Codes a [N, B] and b [M, B] (both binary or both ubinary) → [N, M] equal bits (the higher the closer)."""
    np = _numpy()
    offset = 128 if kind == "binary" else 0
    left = (np.atleast_2d(a).astype(np.int16) + offset).astype(np.uint8)
    right = (np.atleast_2d(b).astype(np.int16) + offset).astype(np.uint8)
    xor = np.bitwise_xor(left[:, None, :], right[None, :, :])
    return (left.shape[-1] * 8 - np.unpackbits(xor, axis=-1).sum(axis=-1)).astype(np.int32)
