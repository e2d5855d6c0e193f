"""Regenerate service/frontend/api/v2/grpc_predict_v2_pb2.py and _pb2_grpc.py from the .proto: `make grpc-stubs`.

Run by the pinned grpcio-tools of the Makefile's generator venv, from the repository root. protoc's output is
kept as it is but for two mechanical edits:
- a header saying how the file is made;
- the messages are registered in a private descriptor pool, not protobuf's default one. The default pool refuses
  a second definition of `inference.ModelInferRequest` & co., and tritonclient.grpc registers its own (Triton's
  superset of the same proto) there, so a process could not import both: a test with the real client beside
  the real server, or an application that embeds fusionserve and calls another Triton server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO = Path("service/frontend/api/v2/grpc_predict_v2.proto")
MESSAGES = PROTO.with_name("grpc_predict_v2_pb2.py")
SERVICE = PROTO.with_name("grpc_predict_v2_pb2_grpc.py")
HEADER = "# Generated from grpc_predict_v2.proto by `make grpc-stubs` (scripts/grpc_stubs.py): do not edit by hand.\n"
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = (
    "# a private pool (scripts/grpc_stubs.py says why): tritonclient.grpc defines the same names in the default one\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def main() -> int:
    status = protoc.main(["protoc", "-I", ".", "--python_out=.", "--grpc_python_out=.", str(PROTO)])
    if status != 0:
        return status
    messages = MESSAGES.read_text()
    if messages.count(DEFAULT_POOL) != 1:
        print(f"{MESSAGES}: protoc's output changed shape; update scripts/grpc_stubs.py", file=sys.stderr)
        return 1
    MESSAGES.write_text(HEADER + messages.replace(DEFAULT_POOL, PRIVATE_POOL))
    SERVICE.write_text(HEADER + SERVICE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
