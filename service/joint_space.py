"""What a bundle's manifest says about its joint space for search (docs/bundle-format.md, "joint_space"): the
Matryoshka prefixes it was trained for, the per-dimension ranges that int8 / uint8 encodings scale by, and the
temperature that calibrates zero-shot scores. Written by training/export.py, read by every serving process.

A bundle without the block (older bundles) serves only its full `embedding_dim`, refuses int8 / uint8 (no ranges
to scale by) and answers zero-shot uncalibrated.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a bundle without a fitted zero-shot temperature divides cosines by: CLIP's logit scale of 100 (its
# learned temperature, exp(4.6052)), so uncalibrated scores are at least as peaked as CLIP users expect.
UNCALIBRATED_TEMPERATURE = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuantizationRanges(_Strict):
    """Per dimension of one prefix (re-normalised), the lowest and highest value of the calibration
    embeddings (the training split's, every slot and the fused one): int8 / uint8 map [min, max] onto 256 steps,
    as sentence-transformers' quantize_embeddings does with calibration embeddings."""

    min: list[float]
    max: list[float]

    @model_validator(mode="after")
    def _ordered(self) -> QuantizationRanges:
        if len(self.min) != len(self.max) or not self.min:
            raise ValueError("quantization ranges need one min and one max per dimension")
        if any(high < low for low, high in zip(self.min, self.max, strict=True)):
            raise ValueError("quantization ranges: max must not be below min")
        return self


class ZeroShotCalibration(_Strict):
    """probability(label) = softmax over the candidate labels of cosine(item, label text) / temperature, with the
    temperature fitted (NLL) on the validation split with the bundle's own label names put into `template`."""

    temperature: float = Field(gt=0)
    template: str = "{}"  # the template the fit used; "{}" is the label
    split: str = "val"
    n: int = Field(0, ge=0)  # validation items the fit used
    accuracy: float = Field(0.0, ge=0, le=1)  # zero-shot top-1 on those items, fused embedding vs label names
    ece: float = Field(0.0, ge=0, le=1)  # expected calibration error (15 equal-width bins) after the fit
    ece_uncalibrated: float = Field(0.0, ge=0, le=1)  # the same at UNCALIBRATED_TEMPERATURE


class JointSpace(_Strict):
    # prefixes of the joint space trained for (Matryoshka loss), ascending, each below embedding_dim; a request
    # may ask for these or the full embedding_dim (any other only with truncate=force)
    matryoshka_dims: list[int] = Field(default_factory=list)
    # str(dim) → the ranges of that prefix; at least the full embedding_dim's when present
    quantization: dict[str, QuantizationRanges] = Field(default_factory=dict)
    zero_shot: ZeroShotCalibration | None = None

    def check(self, embedding_dim: int) -> None:
        """Raise ValueError unless the dims and ranges fit a joint space of `embedding_dim` (Manifest calls it)."""
        dims = self.matryoshka_dims
        if dims != sorted(set(dims)) or any(d < 1 or d >= embedding_dim for d in dims):
            raise ValueError(
                f"joint_space.matryoshka_dims {dims} must be ascending, unique and each in [1, {embedding_dim})"
            )
        for key, ranges in self.quantization.items():
            if not key.isascii() or not key.isdigit() or int(key) not in self.supported_dims(embedding_dim):
                raise ValueError(f"joint_space.quantization[{key!r}] is not a dimension the bundle supports")
            if len(ranges.min) != int(key):
                raise ValueError(f"joint_space.quantization[{key!r}] has {len(ranges.min)} dimensions")

    def supported_dims(self, embedding_dim: int) -> list[int]:
        """The dimensions a request may ask for without truncate=force, ascending."""
        return [*self.matryoshka_dims, embedding_dim]

    def zero_shot_temperature(self) -> tuple[float, bool]:
        """What zero-shot cosines are divided by, and whether it was fitted (else UNCALIBRATED_TEMPERATURE)."""
        if self.zero_shot is None:
            return UNCALIBRATED_TEMPERATURE, False
        return self.zero_shot.temperature, True

    def ranges(self, dim: int) -> QuantizationRanges | None:
        return self.quantization.get(str(dim))
