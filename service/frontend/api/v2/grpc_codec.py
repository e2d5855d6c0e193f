"""KServe V2 gRPC messages ↔ core Tensors (the gRPC counterpart of rest_codec.py).

Inputs come typed (`contents.<type>_contents`) or raw (`raw_input_contents`, one entry per input, in input order;
what tritonclient.grpc sends): numbers little-endian row-major, BYTES elements each a 4-byte little-endian length
then the bytes. Outputs always go raw (`raw_output_contents`, what tritonclient.grpc's `as_numpy` reads).
Errors name the field as gRPC clients see it (`inputs[1].shape`, `raw_input_contents[0]`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from service.errors import InvalidInput
from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2.core import InferRequest, InferResponse, Tensor
from service.frontend.api.v2.rest_codec import (
    NUMERIC,
    deserialize_bytes,
    output_name,  # refuses Triton's classification parameter
    raw_bytes,  # the binary extension's layout is raw_output_contents'
)

CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
# FP16 has no typed field: it travels in raw_input_contents only


# ---- parameters -----------------------------------------------------------------------------------------


def parameter_values(parameters) -> dict:
    """A map<string, InferParameter> → {name: its Python value}."""
    values = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = None if choice is None else getattr(parameter, choice)
    return values


def set_parameters(target, values: dict) -> None:
    """{name: value} → a map<string, InferParameter>; what has no scalar slot (a list) goes as JSON text."""
    for name, value in values.items():
        parameter = target[name]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            parameter.string_param = json.dumps(value)


# ---- request --------------------------------------------------------------------------------------------


def decode_request(message: pb2.ModelInferRequest) -> InferRequest:
    raws = list(message.raw_input_contents)
    if raws and len(raws) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raws)} entries for {len(message.inputs)} inputs; give one per input, "
            "in input order",
            field="raw_input_contents",
        )
    inputs = [_input_tensor(index, spec, raws[index] if raws else None) for index, spec in enumerate(message.inputs)]
    outputs = [output_name(index, output) for index, output in enumerate(message.outputs)] or None
    return InferRequest(inputs, outputs, message.id or None, parameter_values(message.parameters))


def _input_tensor(index: int, spec, raw: bytes | None) -> Tensor:
    where, shape = f"inputs[{index}]", list(spec.shape)
    if any(dimension < 0 for dimension in shape):
        raise InvalidInput(f"{where}.shape {shape} has a negative dimension", field=f"{where}.shape")
    if spec.datatype not in CONTENTS and spec.datatype not in NUMERIC:
        raise InvalidInput(f"{where}.datatype {spec.datatype!r} is not a KServe V2 datatype", f"{where}.datatype")
    if raw is not None and spec.HasField("contents"):
        raise InvalidInput(f"{where} has both contents and raw_input_contents; send one", field=f"{where}.contents")
    if spec.datatype == "BYTES" and raw is not None:
        data = deserialize_bytes(raw, f"raw_input_contents[{index}]")
    elif spec.datatype == "BYTES":
        data = list(spec.contents.bytes_contents)
    else:
        data = _numbers(spec, shape, raw, where)
    return Tensor(spec.name, spec.datatype, shape, data, parameter_values(spec.parameters))


def _numbers(spec, shape: list[int], raw: bytes | None, where: str) -> np.ndarray:
    dtype, count = np.dtype(NUMERIC[spec.datatype]), math.prod(shape)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"raw_input_contents of {where} has {len(raw)} bytes but shape {shape} of {spec.datatype} needs "
                f"{count * dtype.itemsize}",
                field=f"{where}.shape",
            )
        return np.frombuffer(raw, dtype).reshape(shape)
    if spec.datatype not in CONTENTS:
        raise InvalidInput(f"{where}: {spec.datatype} travels in raw_input_contents only", f"{where}.contents")
    values = getattr(spec.contents, CONTENTS[spec.datatype])
    if len(values) != count:
        raise InvalidInput(f"{where} has {len(values)} values but shape {shape} needs {count}", f"{where}.contents")
    return np.asarray(values, dtype).reshape(shape)


# ---- response -------------------------------------------------------------------------------------------


def encode_response(response: InferResponse) -> pb2.ModelInferResponse:
    message = pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(raw_bytes(tensor))
    return message


def metadata_message(metadata: dict) -> pb2.ModelMetadataResponse:
    """core.model_metadata's dict → the message; its `parameters` go in fusionserve's field 6 (see the .proto)."""
    tensor = pb2.ModelMetadataResponse.TensorMetadata
    message = pb2.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[tensor(**spec) for spec in metadata["inputs"]],
        outputs=[tensor(**spec) for spec in metadata["outputs"]],
    )
    set_parameters(message.parameters, metadata["parameters"])
    return message
