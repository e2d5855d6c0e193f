"""A request's embeddings as its protocol asks for them (docs/protocols.md, "Dimensions and encodings"): a
prefix of the joint space (`dimensions`, re-normalised; refused for a dim the bundle was not trained for unless
`truncate` is "force") and its encodings (`embedding_types`, `encoding_format`). Resolved against the admitted
model before any media is decoded, then applied alike to the fused, every slot and every video segment's
embedding, by v1, OpenAI and KServe V2 (REST and gRPC): one rule, so every protocol answers the same numbers.

The maths is service/embedding_types.py's; this module only decides what a request gets and writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.embedding_types import (
    EMBEDDING_TYPES,
    SCALED,
    check_embedding_types,
    encode_rows,
    quantize,
    ranges_for,
    resolve_dimensions,
    to_base64,
)
from service.embedding_types import truncate as prefix  # `truncate` is also the request option's name
from service.errors import InvalidInput
from service.joint_space import UNCALIBRATED_TEMPERATURE, QuantizationRanges
from service.manifest import Manifest

ENCODING_FORMATS = ("float", "base64")
PACKED = ("binary", "ubinary")  # sign bits, 8 dimensions a byte


@dataclass(frozen=True)
class Fields:
    """What a protocol calls its options, so that an error names the field as the caller sent it."""

    dimensions: str = "dimensions"
    truncate: str = "truncate"
    embedding_types: str = "embedding_types"


@dataclass(frozen=True)
class EmbeddingFormat:
    """What one request's embeddings become: `dim` of the model's `full`, then each of `types` (None: one
    plain vector, not an object keyed by type), in `encoding_format` (float: numbers; base64: raw bytes)."""

    dim: int
    full: int
    types: tuple[str, ...] | None = None
    encoding_format: str = "float"
    ranges: QuantizationRanges | None = None

    @property
    def plain(self) -> bool:
        """No option asked for: the vectors go out untouched (no copy, the path every default request takes)."""
        return self.types is None and self.encoding_format == "float" and self.dim == self.full

    def rows(self, vectors: Sequence[np.ndarray] | np.ndarray) -> list:
        """N vectors of the full dim → N written embeddings: a numpy row (orjson writes it as a list), a base64
        string, or {type: row or base64 string} when the request named types."""
        if self.plain or len(vectors) == 0:
            return list(vectors)
        matrix = prefix(np.asarray(vectors, dtype=np.float32), self.dim)  # [N, dim], re-normalised
        if self.types is not None:
            return encode_rows(matrix, list(self.types), self.ranges, self.encoding_format)
        if self.encoding_format == "base64":
            return [to_base64(row) for row in matrix]
        return list(matrix)

    # ---- one type, as a tensor (KServe V2) ------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.types[0] if self.types else "float"

    @property
    def width(self) -> int:
        """The encoded width of one embedding: dim, or ceil(dim / 8) bytes of packed bits."""
        return math.ceil(self.dim / 8) if self.kind in PACKED else self.dim

    def array(self, matrix: np.ndarray) -> np.ndarray:
        """[N, full] float32 → [N, width] of the (single) type's dtype."""
        if self.plain:
            return np.asarray(matrix, dtype=np.float32)
        return quantize(prefix(matrix, self.dim), self.kind, self.ranges).reshape(len(matrix), self.width)


def resolve(
    manifest: Manifest, *, dimensions: int | None = None, truncate: str | None = None,
    types: Sequence[str] | None = None, encoding_format: str = "float", fields: Fields = Fields(),
) -> EmbeddingFormat:  # fmt: skip
    """The request's format for this model, or a 422 naming the field (and the supported dims or types)."""
    dim = resolve_dimensions(manifest, dimensions, truncate, field=fields.dimensions, truncate_field=fields.truncate)
    if types is not None and not types:
        raise InvalidInput(f"{fields.embedding_types} must name at least one of {', '.join(EMBEDDING_TYPES)}",
                           fields.embedding_types)  # fmt: skip
    kinds = types if types is None else check_embedding_types(manifest, list(types), dim, field=fields.embedding_types)
    return EmbeddingFormat(
        dim, manifest.embedding_dim, kinds and tuple(kinds), encoding_format, ranges_for(manifest, dim)
    )


def available_types(manifest: Manifest) -> list[str]:
    """The embedding types every supported dim of the bundle can be sent in (int8 / uint8 need ranges)."""
    calibrated = ranges_for(manifest, manifest.embedding_dim) is not None
    return [kind for kind in EMBEDDING_TYPES if kind not in SCALED or calibrated]


def zero_shot_summary(manifest: Manifest) -> dict:
    """Whether zero-shot scores are calibrated, with the temperature they are divided by and the fit's figures."""
    fit = manifest.joint_space.zero_shot
    if fit is None:
        return {"calibrated": False, "temperature": UNCALIBRATED_TEMPERATURE}
    return {"calibrated": True, **fit.model_dump()}
