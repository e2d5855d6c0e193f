"""KServe V2's embedding outputs in the dimensions and encoding a request's parameters ask for
(docs/protocols.md, "Dimensions and encodings"): `dimensions`, `truncate` and one `embedding_type` (an output tensor
has one datatype), checked for the model before any row is decoded; and what the model metadata says of them."""

from __future__ import annotations

from service.embedding_types import EMBEDDING_TYPES
from service.errors import InvalidInput
from service.frontend.api.embedding_format import EmbeddingFormat, Fields, resolve
from service.frontend.describe import joint_space_summary
from service.manifest import Manifest

# the embedding outputs' dimensions and encoding (docs/protocols.md, "Dimensions and encodings"); one type per
# request, since a tensor has one datatype
FIELDS = Fields("parameters.dimensions", "parameters.truncate", "parameters.embedding_type")


def joint_space_parameters(manifest: Manifest) -> dict:
    """The supported dims and embedding types (lists: JSON text over gRPC), and zero-shot's calibration as
    scalars, so a gRPC client reads them from InferParameter's scalar slots."""
    summary = joint_space_summary(manifest)
    zero_shot = summary["zero_shot"]
    flat = {"dimensions": summary["dimensions"], "embedding_types": summary["embedding_types"],
            "zero_shot_calibrated": zero_shot["calibrated"],
            "zero_shot_temperature": zero_shot["temperature"]}  # fmt: skip
    if zero_shot["calibrated"]:
        flat |= {"zero_shot_ece": zero_shot["ece"], "zero_shot_ece_uncalibrated": zero_shot["ece_uncalibrated"]}
    return flat


# ---- the embeddings' format ------------------------------------------------------------------------------


def _dimensions(parameters: dict) -> int | None:
    """An int (REST's JSON number, gRPC's int64_param) or its digits as text (a string_param)."""
    value = parameters.get("dimensions")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInput(f"{FIELDS.dimensions} must be an integer, got {value!r}", FIELDS.dimensions)
    return value


def embedding_format(manifest: Manifest, parameters: dict) -> EmbeddingFormat:
    """The request's `dimensions`, `truncate` and `embedding_type` parameters for this model; a 422 naming them."""
    if "embedding_types" in parameters:  # Cohere's plural: one tensor holds one datatype
        raise InvalidInput(
            "parameters.embedding_types is not a KServe V2 parameter: send one embedding_type (an output tensor "
            f"has one datatype): one of {', '.join(EMBEDDING_TYPES)}",
            "parameters.embedding_types",
        )
    kind, truncate = parameters.get("embedding_type"), parameters.get("truncate")
    if kind is not None and not isinstance(kind, str):
        raise InvalidInput(f"{FIELDS.embedding_types} must be one of {', '.join(EMBEDDING_TYPES)} (one type)",
                           FIELDS.embedding_types)  # fmt: skip
    if truncate is not None and not isinstance(truncate, str):
        raise InvalidInput(f"{FIELDS.truncate} must be 'force' when given (got {truncate!r})", FIELDS.truncate)
    try:
        return resolve(manifest, dimensions=_dimensions(parameters), truncate=truncate,
                       types=None if kind is None else [kind], fields=FIELDS)  # fmt: skip
    except InvalidInput as error:  # check_embedding_types names the list's element: here there is no list
        where = f"{FIELDS.embedding_types}[0]"
        if error.field != where:
            raise
        raise InvalidInput(error.message.replace(where, FIELDS.embedding_types), FIELDS.embedding_types) from None
