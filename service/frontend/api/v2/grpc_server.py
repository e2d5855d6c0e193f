"""KServe V2 over gRPC: the `inference.GRPCInferenceService` (grpc.aio) on FUSIONSERVE_GRPC_PORT, on the same data
plane as v1 and V2 REST: the same admission, batchers, limits, metrics (endpoint "v2_grpc_infer") and messages.

- Errors: FusionError.status → a gRPC status (STATUS_CODES) with the v1 message; 429's Retry-After goes in the
  trailing metadata as `retry-after`.
- Limits: the body limit (FUSIONSERVE_MAX_UPLOAD_BYTES) is the max receive message size (grpc answers
  RESOURCE_EXHAUSTED past it); a received message counts against the process's body budget (HTTP's too:
  service/frontend/body_budget.py) until its RPC ends, UNAVAILABLE + retry-after past it; rows and per-item limits are
  core's and preprocessing's, as over REST.
- Auth: with FUSIONSERVE_API_KEY set, `authorization: Bearer <key>` or `x-api-key: <key>` metadata, else
  UNAUTHENTICATED, judged on the metadata before the message is read; ServerLive and ServerReady stay open,
  like /healthz and /readyz.
- Deadlines: the one rule of every protocol (api/deadline.py): the shortest of the RPC's deadline, the
  `x-request-timeout-ms` metadata and Triton's `timeout` parameter (µs), else FUSIONSERVE_DEFAULT_DEADLINE_MS.
  A cancelled RPC's queued rows leave their queues before compute.
- Drain: from SIGTERM new inference RPCs get UNAVAILABLE, counted as HTTP's drain refusals are (api/refusals.py);
  `stop` lets the RPCs in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import grpc

from service.errors import (
    REQUEST_ID,
    ClientDisconnected,
    FusionError,
    InternalError,
    current_request_id,
    request_id_from,
)
from service.frontend.api.deadline import Deadline, header_timeout_ms, parameter_timeout_ms
from service.frontend.api.refusals import Draining
from service.frontend.api.v2 import core
from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from service.frontend.api.v2.grpc_codec import decode_request, encode_response, metadata_message
from service.frontend.api.v2.grpc_guard import DecodeGuardInterceptor
from service.frontend.body_budget import Reservation
from service.frontend.cycle import Admitted, Call
from service.frontend.dataplane import DataPlane
from service.tracing import grpc as tracing_grpc

log = logging.getLogger("fusionserve")
REQUEST_ID_KEY = "x-request-id"  # metadata keys are lower case
ENDPOINT = "v2_grpc_infer"  # the endpoint label of fusionserve_requests_* for V2 gRPC inference
SERVICE = "/inference.GRPCInferenceService/"
OPEN_METHODS = {SERVICE + "ServerLive", SERVICE + "ServerReady"}  # probes, like /healthz and /readyz
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    499: grpc.StatusCode.CANCELLED,
    404: grpc.StatusCode.NOT_FOUND,
    # a request over a limit stays over it when retried: INVALID_ARGUMENT, so that RESOURCE_EXHAUSTED keeps
    # meaning "overloaded, retry later" (429) for clients and retry policies
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    500: grpc.StatusCode.INTERNAL,
}
# Answer a deadline ourselves (DEADLINE_EXCEEDED with v1's message, counted 504) a little before grpc cancels
# the RPC at the client's deadline (which would count as a client gone).
DEADLINE_MARGIN_S = 0.02


async def abort(context: grpc.aio.ServicerContext, error: FusionError) -> None:
    metadata = tuple((name.lower(), value) for name, value in error.headers.items() if name.lower() != REQUEST_ID_KEY)
    code = STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL)
    tracing_grpc.status(code.name)
    metadata += ((REQUEST_ID_KEY, current_request_id()),)  # errors name their request too
    await context.abort(code, core.error_message(error), trailing_metadata=metadata)


def unexpected(plane: DataPlane, error: Exception) -> InternalError:
    """Logged with its traceback under the request id the answer names; the exception's text stays in the log."""
    internal = InternalError(current_request_id())
    plane.metrics.internal_errors.labels("grpc", "unexpected").inc()
    log.error("request id %s: unexpected error in a gRPC inference", internal.request_id, exc_info=error)
    return internal


class InferenceServicer(pb2_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of KServe's proto; what Triton's proto adds (ModelConfig, statistics, repository,
    shared memory, streaming) is not in ours, so grpc answers UNIMPLEMENTED."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def ServerLive(self, request, context) -> pb2.ServerLiveResponse:
        return pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> pb2.ServerReadyResponse:
        return pb2.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context) -> pb2.ModelReadyResponse:
        try:
            ready = self.plane.model_ready(request.name, request.version or None)
        except FusionError as error:  # an unknown model is NOT_FOUND, not "not ready"
            await abort(context, error)
        return pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context) -> pb2.ServerMetadataResponse:
        metadata = core.server_metadata()
        # core's extensions are REST's (binary tensors); none of them applies to gRPC
        return pb2.ServerMetadataResponse(name=metadata["name"], version=metadata["version"], extensions=[])

    async def ModelMetadata(self, request, context) -> pb2.ModelMetadataResponse:
        try:
            return metadata_message(core.model_metadata(self.plane, request.name, request.version or None))
        except FusionError as error:
            await abort(context, error)

    async def ModelInfer(self, request, context) -> pb2.ModelInferResponse:
        # grpc cancels this task when the RPC ends early (client cancel, deadline, stop); the work runs shielded
        # so that the data plane, told through `cancelled`, drops its rows and counts the request as 499
        cancelled = asyncio.get_running_loop().create_future()
        metadata = dict(context.invocation_metadata() or ())
        REQUEST_ID.set(request_id := request_id_from(metadata.get(REQUEST_ID_KEY)))
        await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))  # every answer names its id
        with tracing_grpc.server_span("ModelInfer", metadata):
            return await self._watched(request, context, cancelled)

    async def _watched(self, request, context, cancelled: asyncio.Future) -> pb2.ModelInferResponse:
        work = asyncio.ensure_future(self._infer(request, context, cancelled))  # the id goes with its context
        try:
            return await asyncio.shield(work)
        except FusionError as error:
            await abort(context, error)
        except Exception as error:  # noqa: BLE001 — an onnxruntime RuntimeError, a bug: INTERNAL, with the id
            await abort(context, unexpected(self.plane, error))
        except asyncio.CancelledError:
            cancelled.set_result(None)
            await asyncio.wait({work})
            if not work.cancelled() and not isinstance(work.exception(), ClientDisconnected | None):
                log.warning("a cancelled gRPC inference ended with %r", work.exception())
            raise

    async def _infer(self, request, context, cancelled: asyncio.Future) -> pb2.ModelInferResponse:
        call = Call(request.model_name, request.model_version or None, ENDPOINT)
        codec = GrpcCodec(self.plane, request, context, cancelled)
        try:
            served = await self.plane.serve(call, codec)
        finally:
            codec.reservation.close()
        return served.body


class GrpcCodec(core.V2Codec):
    """V2 over gRPC: a ModelInferRequest in (decoded after admission), a ModelInferResponse out."""

    def __init__(self, plane: DataPlane, message, context: grpc.aio.ServicerContext, cancelled: asyncio.Future):
        super().__init__(plane.settings)
        self.plane, self.message, self.context, self.cancelled = plane, message, context, cancelled
        self.reservation = Reservation(plane.body_budget)  # closed by InferenceServicer._infer
        self.deadline = Deadline(time.monotonic(), self.settings.default_deadline_ms)  # from arrival

    def check(self) -> None:
        if self.plane.draining():
            raise Draining()
        self.deadline.state(header_timeout_ms(dict(self.context.invocation_metadata() or ())))
        remaining = self.context.time_remaining()  # None: the client set no deadline
        if remaining is not None:
            self.deadline.state_at(time.monotonic() + remaining - DEADLINE_MARGIN_S)

    async def read_body(self) -> None:
        # grpc has received the message: it counts against the budget HTTP bodies share, until the RPC ends
        self.reservation.take(self.message.ByteSize())

    async def read(self, admitted: Admitted) -> tuple[core.InferRequest, float]:
        decoded = decode_request(self.message)
        self.deadline.state(parameter_timeout_ms(decoded.parameters))  # tritonclient's infer(timeout=…), µs
        return decoded, self.deadline.at

    def watch(self) -> asyncio.Future:
        return asyncio.shield(self.cancelled)  # the cycle cancels what it is given; ModelInfer owns `cancelled`

    def write(self, response: core.InferResponse) -> pb2.ModelInferResponse:
        return encode_response(response)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """`authorization: Bearer <key>` or `x-api-key: <key>` (constant-time compare), as the HTTP middleware."""

    def __init__(self, api_key: str):
        self.key = api_key.encode()
        # request-streaming, whatever the method: grpc hands over an iterator that the denial never reads, so
        # an unauthenticated caller's message (up to FUSIONSERVE_MAX_UPLOAD_BYTES) is never received whole
        self.denied = grpc.stream_unary_rpc_method_handler(self._deny)

    def _presented(self, metadata) -> bytes:
        values = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
        auth = values.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip().encode()
        return values.get("x-api-key", "").encode()

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        presented = self._presented(details.invocation_metadata)
        if details.method in OPEN_METHODS or secrets.compare_digest(presented, self.key):
            return await continuation(details)
        return self.denied

    @staticmethod
    async def _deny(requests, context: grpc.aio.ServicerContext) -> None:
        # a refusal is an answer too: it names the caller's request id (or one made here) like every other
        request_id = request_id_from(dict(context.invocation_metadata() or ()).get("x-request-id"))
        metadata = (("x-request-id", request_id),)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key", trailing_metadata=metadata)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(plane: DataPlane, reuse_port: bool = False) -> grpc.aio.Server | None:
    """The gRPC server on settings.host:grpc_port, started; None when FUSIONSERVE_GRPC_PORT is unset. `reuse_port`:
    several front-end processes of one server listen on the port."""
    settings = plane.settings
    if settings.grpc_port is None:
        return None
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    server = grpc.aio.server(
        # the key first (denied before any parse); the parse guard innermost, around the real handler
        interceptors=[*([ApiKeyInterceptor(key)] if key is not None else []), DecodeGuardInterceptor()],
        options=[
            ("grpc.max_receive_message_length", settings.max_upload_bytes),
            # a port in use fails the start instead of being shared silently; front-ends of one server share it
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane), server)
    server.add_insecure_port(address(settings.host, settings.grpc_port))  # raises when the port is taken
    await server.start()
    log.info("KServe V2 gRPC on %s", address(settings.host, settings.grpc_port))
    return server


async def stop(server: grpc.aio.Server | None, grace_s: float) -> None:
    """Refuse new RPCs (UNAVAILABLE) and let those in flight finish within `grace_s`, then cancel them."""
    if server is not None:
        await server.stop(grace_s)
