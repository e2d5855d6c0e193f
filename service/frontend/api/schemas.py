"""Response bodies (docs/protocols.md, v1) and the OpenAPI request body that lets Swagger UI send files."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.modalities.registry import specs

# One embedding as a request asked for it (docs/protocols.md, "Dimensions and encodings"): numbers (float32, or
# int8 / uint8 / packed bits), a base64 string of their little-endian bytes, or with embedding_types an object
# keyed by type holding either
Vector = list[float] | str | dict[str, list[float] | str]


class LabelScore(BaseModel):
    label: str
    score: float


class Evidence(BaseModel):
    """One present slot's own head (classify?explain=true): a modality, or a video's video_frames / video_audio."""

    modality: str
    label: str = Field(description="that modality's own top label")
    score: float = Field(description="its probability under that modality's head")
    agrees: bool = Field(description="its top label is the fused top label")


SEGMENT_MODALITIES = "the video slots this segment had: video_frames (pictures), video_audio (sound)"


class ClassifySegment(BaseModel):
    """One segment of a video item: fused from its frames, its sound and the item's other inputs."""

    start_s: float
    end_s: float
    modalities: list[str] = Field(description=SEGMENT_MODALITIES)
    labels: list[LabelScore]
    evidence: list[Evidence] | None = Field(None, description="explain=true only: per slot fused in this segment")
    agreement: bool | None = None


class ClassifyResult(BaseModel):
    modalities: list[str]
    labels: list[LabelScore]
    evidence: list[Evidence] | None = Field(
        None,
        description="explain=true only: per present slot, in the order image, text, audio, video_frames, video_audio",
    )
    agreement: bool | None = Field(None, description="explain=true only: every modality agrees with the fusion")
    segments: list[ClassifySegment] | None = Field(None, description="video items only: the answer per segment")


class ClassifyResponse(BaseModel):
    model: str
    version: str
    results: list[ClassifyResult]


class EmbedSegment(BaseModel):
    start_s: float
    end_s: float
    modalities: list[str] = Field(description=SEGMENT_MODALITIES)
    fused: Vector
    embeddings: dict[str, Vector] = Field(description="per video slot this segment had (L2-normalised)")


class EmbedResult(BaseModel):
    """One item's embeddings: fused, and one per present slot of fusion (service.manifest.SLOTS: a video's
    video_frames and video_audio are the clip's, pooled over its segments)."""

    modalities: list[str]
    fused: Vector = Field(description="in the request's dimensions and encodings, as every slot's and segment's")
    image: Vector | None = None
    text: Vector | None = None
    audio: Vector | None = None
    video_frames: Vector | None = None
    video_audio: Vector | None = None
    segments: list[EmbedSegment] | None = Field(None, description="video items only: per segment")


class EmbedResponse(BaseModel):
    model: str
    version: str
    dim: int = Field(description="the dimensions answered: the request's, else the model's embedding_dim")
    results: list[EmbedResult]


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None
    request_id: str | None = None  # the answer's X-Request-Id, added by api/request_id.py to every error body


class ErrorResponse(BaseModel):
    error: ErrorBody


def _part_schema(encoding: str) -> dict:
    """Each registered modality's v1 part: a file (`encoding` binary in multipart, byte in JSON) or a string."""
    schemas = {}
    for spec in specs():
        about = spec.description() if encoding == "binary" else f"base64 {spec.name} file ({spec.description()})"
        file = {"type": "string", "format": encoding, "description": about}
        schemas[spec.parts.v1] = file if spec.encoded_file else {"type": "string"}
    return schemas


# The route reads the body itself (to enforce limits and accept two content types), so the request body
# is declared here for OpenAPI; `format: binary` makes Swagger UI show file pickers.
MULTIPART_SCHEMA = {
    "type": "object",
    "properties": _part_schema("binary"),
    # as read_items enforces: only these fields, at least one of them (declared so that generated
    # clients and property-based tests send what the server accepts)
    "additionalProperties": False,
    "minProperties": 1,
}
JSON_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": _part_schema("byte"),
                "additionalProperties": False,
                "minProperties": 1,
            },
        }
    },
}
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            "application/json": {"schema": JSON_SCHEMA},
        },
    }
}
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429, 503, 504)}
