"""One in-flight byte budget for request bodies, shared by every protocol of a process (HTTP: api/body.py;
gRPC: api/v2/grpc_server.py). Bytes are reserved before they are buffered — by Content-Length, or chunk by
chunk for a chunked body, or a gRPC message's size once received — and released when the request ends. The
queue bounds count items and the door counts requests; neither bounds memory while bodies are still
arriving, or with no drain rate measured yet (a cold start), which is what this does."""

from __future__ import annotations

from service.errors import FusionError


class BodyBudgetFull(FusionError):
    """Reserving a body's bytes would cross FUSIONSERVE_MAX_INFLIGHT_BODY_BYTES: retry in a moment."""

    status, type = 503, "body_budget_full"
    reject_reason = "body_budget"  # fusionserve_rejected_total{reason}


class BodyBudget:
    """Bytes of request bodies held by this process. Single-threaded (the event loop), so no lock."""

    def __init__(self, limit: int):
        self.limit, self.reserved, self.peak = limit, 0, 0

    def try_reserve(self, size: int) -> bool:
        if self.reserved + size > self.limit:
            return False
        self.reserved += size
        self.peak = max(self.peak, self.reserved)
        return True

    def release(self, size: int) -> None:
        self.reserved -= size

    def refusal(self, size: int) -> BodyBudgetFull:
        return BodyBudgetFull(
            f"{size} more body bytes would exceed the in-flight body budget of {self.limit} bytes "
            f"({self.reserved} held; FUSIONSERVE_MAX_INFLIGHT_BODY_BYTES); retry shortly",
            field="body",
            headers={"Retry-After": "1"},
        )


class Reservation:
    """One request's share of the budget: grows as its body arrives, all of it released at `close`."""

    def __init__(self, budget: BodyBudget):
        self.budget, self.size = budget, 0

    def take(self, size: int) -> None:
        """Reserve `size` more bytes, or raise BodyBudgetFull (nothing reserved for them)."""
        if not self.budget.try_reserve(size):
            raise self.budget.refusal(size)
        self.size += size

    def close(self) -> None:
        self.budget.release(self.size)
        self.size = 0
