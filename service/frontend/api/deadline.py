"""One deadline rule for every protocol (docs/protocols.md, "Deadlines"): a request's deadline is its arrival plus
the shortest timeout it states, else FUSIONSERVE_DEFAULT_DEADLINE_MS. A request states a timeout with

- the `x-request-timeout-ms` header (milliseconds), over every protocol: an HTTP header, or gRPC metadata;
- gRPC's own deadline (`grpc-timeout`), which grpc enforces whatever we do;
- KServe V2's `timeout` request parameter (microseconds, what tritonclient's `infer(timeout=…)` sends), REST or gRPC.

Every stated value is judged by `timeout_ms`: an int or a float (a header's text that reads as one), positive and at
most MAX_TIMEOUT_MS, else 422 naming the field. The header is judged in the cycle's check, before the door, like
every header; the parameter, in the body, when the body is decoded, over REST and gRPC alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import InvalidInput

DEADLINE_HEADER = "x-request-timeout-ms"
TIMEOUT_PARAMETER = "parameters.timeout"  # V2's `timeout`, as errors name it
MAX_TIMEOUT_MS = 3_600_000  # an hour: a longer wait is a mistake in the client, not a deadline
US_PER_MS = 1000


def timeout_ms(value: object, field: str, per_ms: int = 1) -> float | None:
    """`value`, a number of 1/per_ms milliseconds, in milliseconds; None when absent; InvalidInput naming `field`
    unless it is an int or a float in (0, MAX_TIMEOUT_MS]."""
    if value is None:
        return None
    limit = MAX_TIMEOUT_MS * per_ms
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:  # NaN fails too
        unit = "milliseconds" if per_ms == 1 else "microseconds"
        raise InvalidInput(f"{field} must be a number of {unit} in (0, {limit}]", field=field)
    return value / per_ms


def header_timeout_ms(headers: Mapping) -> float | None:
    """The x-request-timeout-ms of HTTP headers or gRPC metadata (str keys, lower case): its text as a number."""
    raw = headers.get(DEADLINE_HEADER)
    try:
        value = raw if raw is None else float(raw)
    except ValueError:
        value = raw  # not a number: refused below, named
    return timeout_ms(value, DEADLINE_HEADER)


def parameter_timeout_ms(parameters: Mapping) -> float | None:
    """V2's `timeout` request parameter (µs; a JSON or protobuf number, not text) in milliseconds."""
    return timeout_ms(parameters.get("timeout"), TIMEOUT_PARAMETER, US_PER_MS)


class Deadline:
    """One request's deadline: from `arrived` (time.monotonic()), the shortest timeout stated so far, else the
    default. A codec states what it reads (`state`) and hands the cycle `at`."""

    def __init__(self, arrived: float, default_ms: float):
        self.arrived, self.default_ms, self.stated_ms = arrived, default_ms, None

    def state(self, ms: float | None) -> None:
        if ms is not None:
            self.stated_ms = ms if self.stated_ms is None else min(self.stated_ms, ms)

    def state_at(self, at: float) -> None:
        """A deadline stated as a time.monotonic() instant (gRPC's)."""
        self.state((at - self.arrived) * 1000)

    @property
    def ms(self) -> float:
        return self.default_ms if self.stated_ms is None else self.stated_ms

    @property
    def at(self) -> float:
        return self.arrived + self.ms / 1000
