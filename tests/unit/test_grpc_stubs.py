"""The committed gRPC stubs are `make grpc-stubs`'s output for the committed .proto, and load on the oldest
protobuf and grpcio that pyproject allows (gencode newer than the runtime refuses to load)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from packaging.requirements import Requirement
from packaging.version import Version

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = "service/frontend/api/v2/grpc_predict_v2.proto"
STUBS = ROOT / "service/frontend/api/v2"


def without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor sets carry json_name, its Python gencode does not: compare without."""
    messages = list(file.message_type)
    while messages:
        message = messages.pop()
        for field in message.field:
            field.ClearField("json_name")
        messages.extend(message.nested_type)
    return file


def test_stubs_are_generated_from_the_proto(tmp_path):
    out = tmp_path / "descriptor.pb"
    assert protoc.main(["protoc", "-I", str(ROOT), f"--descriptor_set_out={out}", str(ROOT / PROTO)]) == 0
    (compiled,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb2.DESCRIPTOR.serialized_pb)
    assert without_json_names(compiled) == without_json_names(committed), "stale stubs: run `make grpc-stubs`"


def floor(package: str) -> Version:
    """The lowest version of `package` that the `serve` extra allows."""
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    (requirement,) = [Requirement(line) for line in serve if Requirement(line).name == package]
    (lowest,) = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return lowest


def test_gencode_is_no_newer_than_the_oldest_runtimes_allowed():
    messages = (STUBS / "grpc_predict_v2_pb2.py").read_text()
    major, minor, patch = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", messages).groups()
    assert Version(f"{major}.{minor}.{patch}") <= floor("protobuf")
    service = (STUBS / "grpc_predict_v2_pb2_grpc.py").read_text()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", service).group(1)
    assert Version(grpc_version) <= floor("grpcio")


def test_stubs_live_beside_tritonclient_in_one_process():
    """A private descriptor pool: tritonclient.grpc registers the same `inference.*` names in the default one."""
    import tritonclient.grpc as triton

    assert pb2.ModelInferRequest.DESCRIPTOR.full_name == triton.service_pb2.ModelInferRequest.DESCRIPTOR.full_name
    assert pb2.ModelInferRequest.DESCRIPTOR is not triton.service_pb2.ModelInferRequest.DESCRIPTOR
