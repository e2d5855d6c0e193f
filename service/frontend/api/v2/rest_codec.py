"""KServe V2 REST bodies ↔ core Tensors: JSON tensors and Triton's binary tensor extension, both ways.

Binary extension: the `Inference-Header-Content-Length` header gives the JSON header's length; the raw tensors
follow it, in input order, each sized by its `binary_data_size` parameter (BYTES elements: 4-byte little-endian
length + bytes; numbers: little-endian, row-major). Outputs go binary when asked per output (`binary_data`) or
for all (`binary_data_output`), and the reply then carries the same header.

JSON can only carry text, so in JSON tensor data the media inputs (`image`, `audio`, `video`) are base64 strings
(a data: URL's payload too); `text` is the string itself. In binary tensor data every BYTES element is raw bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import BadRequest, InvalidInput
from service.frontend.api.inputs import decode_base64, field_path
from service.frontend.api.v2.core import InferRequest, InferResponse, Tensor
from service.frontend.api.v2.nesting import MAX_RANK, first_depth, flatten, too_deep
from service.modalities.registry import specs

HEADER_LENGTH = "Inference-Header-Content-Length"
MEDIA_INPUTS = tuple(spec.parts.v2 for spec in specs() if spec.encoded_file)  # files: base64 in JSON tensor data
NUMERIC = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
    "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]  # fmt: skip


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequestBody(BaseModel):
    """The JSON header of `POST /v2/models/{m}/infer` (the Open Inference Protocol's $inference_request)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


@dataclass
class DecodedRequest:
    request: InferRequest
    binary_default: bool = False  # the request's binary_data_output parameter
    binary: dict[str, bool] = field(default_factory=dict)  # per requested output: its binary_data parameter

    def is_binary(self, output: str) -> bool:
        return self.binary.get(output, self.binary_default)


# ---- request --------------------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} must be the JSON header's length in bytes, at most the body's {len(body)}",
            field=HEADER_LENGTH,
        )
    return body[: int(header_length)], body[int(header_length) :]


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    header, blob = split_body(body, header_length)
    try:
        parsed = InferenceRequestBody.model_validate(orjson.loads(header))
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}", field="body") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = field_path(first["loc"]) or "body"
        raise InvalidInput(f"{where}: {first['msg']}", field=where) from None
    inputs, offset = [], 0
    for index, spec in enumerate(parsed.inputs):
        tensor, offset = _input_tensor(index, spec, blob, offset)
        inputs.append(tensor)
    if offset != len(blob):
        raise BadRequest(f"the body has {len(blob) - offset} bytes beyond its inputs' binary_data_size", "body")
    outputs = None if parsed.outputs is None else [output_name(i, o) for i, o in enumerate(parsed.outputs)]
    decoded = DecodedRequest(InferRequest(inputs, outputs, parsed.id, parsed.parameters))
    decoded.binary_default = _flag(parsed.parameters, "binary_data_output", "parameters")
    for index, output in enumerate(parsed.outputs or []):
        if "binary_data" in output.parameters:
            decoded.binary[output.name] = _flag(output.parameters, "binary_data", f"outputs[{index}].parameters")
    return decoded


def _flag(parameters: dict, name: str, where: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{name} must be true or false", field=f"{where}.{name}")
    return value


def output_name(index: int, output: RequestOutput) -> str:
    if "classification" in output.parameters:
        raise InvalidInput(
            "the classification extension is not supported; ask for the label and probabilities outputs",
            field=f"outputs[{index}].parameters.classification",
        )
    return output.name


def _input_tensor(index: int, spec: RequestInput, blob: bytes, offset: int) -> tuple[Tensor, int]:
    where, count = f"inputs[{index}]", math.prod(spec.shape)
    if len(spec.shape) > MAX_RANK:
        raise InvalidInput(f"{where}.shape has {len(spec.shape)} dimensions; the limit is {MAX_RANK}", f"{where}.shape")
    size = spec.parameters.get("binary_data_size")
    if size is None:
        if spec.data is None:
            raise InvalidInput(f"{where}.data is required (or binary_data_size, with binary data)", f"{where}.data")
        data = _json_bytes(spec, where, count) if spec.datatype == "BYTES" else _json_numbers(spec, where, count)
        return Tensor(spec.name, spec.datatype, spec.shape, data, spec.parameters), offset
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(blob) - offset:
        raise InvalidInput(
            f"{where}.parameters.binary_data_size must be a byte count within the {len(blob) - offset} bytes left",
            f"{where}.parameters.binary_data_size",
        )
    if spec.data is not None:
        raise InvalidInput(f"{where} has both data and binary_data_size; send one", f"{where}.data")
    raw = blob[offset : offset + size]
    data = deserialize_bytes(raw, where) if spec.datatype == "BYTES" else _binary_numbers(spec, raw, where, count)
    if len(data) != count and spec.datatype == "BYTES":
        raise InvalidInput(f"{where} has {len(data)} elements but shape {spec.shape} needs {count}", f"{where}.shape")
    return Tensor(spec.name, spec.datatype, spec.shape, data, spec.parameters), offset + size


def _json_bytes(spec: RequestInput, where: str, count: int) -> list[bytes]:
    elements = flatten(spec.data, where)
    if len(elements) != count:
        raise InvalidInput(f"{where} has {len(elements)} elements but shape {spec.shape} needs {count}", where)
    for position, element in enumerate(elements):
        if not isinstance(element, str):
            raise InvalidInput(f"{where}.data[{position}] must be a string (BYTES)", f"{where}.data[{position}]")
    if spec.name in MEDIA_INPUTS:
        return [decode_base64(element, f"{spec.name}[{row}]") for row, element in enumerate(elements)]
    return [element.encode() for element in elements]


def _json_numbers(spec: RequestInput, where: str, count: int) -> np.ndarray:
    if first_depth(spec.data) > MAX_RANK:
        raise too_deep(where)
    try:
        array = np.asarray(spec.data, dtype=NUMERIC[spec.datatype])
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"{where}.data is not an array of {spec.datatype}", f"{where}.data") from None
    if array.size != count:
        raise InvalidInput(f"{where} has {array.size} values but shape {spec.shape} needs {count}", where)
    return array.reshape(spec.shape)


def _binary_numbers(spec: RequestInput, raw: bytes, where: str, count: int) -> np.ndarray:
    dtype = np.dtype(NUMERIC[spec.datatype])
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where} has {len(raw)} bytes but shape {spec.shape} of {spec.datatype} needs {count * dtype.itemsize}",
            f"{where}.parameters.binary_data_size",
        )
    return np.frombuffer(raw, dtype).reshape(spec.shape)


def deserialize_bytes(raw: bytes, where: str = "tensor") -> list[bytes]:
    """Length-prefixed BYTES elements (4-byte little-endian length, then the bytes) → their list."""
    elements, offset, view = [], 0, memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"{where}: a BYTES element's 4-byte length is cut off at byte {offset}", where)
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(
                f"{where}: BYTES element {len(elements)} declares {length} bytes; {len(raw) - offset} remain", where
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


# ---- response -------------------------------------------------------------------------------------------


def raw_bytes(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return serialize_bytes(tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=NUMERIC[tensor.datatype]).tobytes()


def _json_data(tensor: Tensor) -> Any:
    if tensor.datatype == "BYTES":
        return [element.decode("utf-8", errors="replace") for element in tensor.data]
    return np.ascontiguousarray(tensor.data).ravel()  # flat, row-major; orjson writes numpy directly


def encode_response(response: InferResponse, decoded: DecodedRequest) -> tuple[bytes, dict[str, str]]:
    """(body, headers): plain JSON, or the JSON header then the binary outputs when any is binary."""
    outputs, blobs = [], []
    for tensor in response.outputs:
        described = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if decoded.is_binary(tensor.name):
            blobs.append(raw_bytes(tensor))
            described["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            described["data"] = _json_data(tensor)
        outputs.append(described)
    body = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id is not None:
        body["id"] = response.id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header)), "content-type": "application/octet-stream"}
