"""A gRPC message that protobuf cannot parse is the caller's error: INVALID_ARGUMENT naming the message and the
limit, not grpc's UNKNOWN ("Unexpected DecodeError"), which clients and retry policies read as a server fault.

protobuf refuses a malformed message, and one nesting deeper than its recursion limit (PROTOBUF_DEPTH_LIMIT:
e.g. 700 nested groups of an unknown field, which the KServe messages never need), before any of our code
runs; so the parse is wrapped here, in an interceptor, for every unary method of the service.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

PROTOBUF_DEPTH_LIMIT = 100  # upb's and the C++ runtime's default recursion limit


class Undecodable:
    """What the wrapped deserializer returns for bytes protobuf refuses: the method answers INVALID_ARGUMENT."""

    def __init__(self, error: DecodeError):
        self.error = error


def _tolerant(deserialize):
    def parse(raw: bytes):
        try:
            return deserialize(raw)
        except DecodeError as error:
            return Undecodable(error)

    return parse


def _refusing(behaviour, method: str):
    async def answer(request, context: grpc.aio.ServicerContext):
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{method}: the request is not a valid protobuf message (malformed, or nested deeper than "
                f"protobuf's limit of {PROTOBUF_DEPTH_LIMIT} levels)",
            )
        return await behaviour(request, context)

    return answer


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):
    """Innermost interceptor: wraps the real handler's parse; streaming handlers (none in our service, and the
    API key's denial, which never reads the message) pass unchanged."""

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer),
            unary_unary=_refusing(handler.unary_unary, details.method.rsplit("/", 1)[-1]),
        )
