"""The one deadline rule (service/frontend/api/deadline.py): what a stated timeout may be, in which unit, and how the
timeouts a request states make its deadline."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput
from service.frontend.api.deadline import (
    DEADLINE_HEADER,
    MAX_TIMEOUT_MS,
    TIMEOUT_PARAMETER,
    Deadline,
    header_timeout_ms,
    parameter_timeout_ms,
)


@pytest.mark.parametrize("text, ms", [("250", 250.0), ("12.5", 12.5), (" 1e3 ", 1000.0), (str(MAX_TIMEOUT_MS), 3.6e6)])
def test_a_header_states_milliseconds_as_any_number(text, ms):
    assert header_timeout_ms({DEADLINE_HEADER: text}) == ms


@pytest.mark.parametrize("text", ["0", "-5", "soon", "", "nan", "inf", str(MAX_TIMEOUT_MS + 1)])
def test_a_header_that_is_no_timeout_is_422_naming_it(text):
    with pytest.raises(InvalidInput) as caught:
        header_timeout_ms({DEADLINE_HEADER: text})
    assert caught.value.status == 422 and caught.value.field == DEADLINE_HEADER
    assert caught.value.message == f"{DEADLINE_HEADER} must be a number of milliseconds in (0, {MAX_TIMEOUT_MS}]"


@pytest.mark.parametrize("value, ms", [(5000, 5.0), (2.5e6, 2500.0), (MAX_TIMEOUT_MS * 1000, MAX_TIMEOUT_MS)])
def test_the_v2_parameter_states_microseconds_as_an_int_or_a_float(value, ms):
    assert parameter_timeout_ms({"timeout": value}) == ms


@pytest.mark.parametrize("value", [0, -1, True, "5000", [5000], float("nan"), MAX_TIMEOUT_MS * 1000 + 1])
def test_a_v2_parameter_that_is_no_number_of_microseconds_is_422_naming_it(value):
    with pytest.raises(InvalidInput) as caught:
        parameter_timeout_ms({"timeout": value})
    assert caught.value.status == 422 and caught.value.field == TIMEOUT_PARAMETER


def test_nothing_stated_is_nothing():
    assert header_timeout_ms({}) is None and parameter_timeout_ms({}) is None


def test_the_deadline_is_the_arrival_plus_the_shortest_stated_timeout_else_the_default():
    deadline = Deadline(arrived=100.0, default_ms=10_000)
    assert deadline.at == 110.0  # nothing stated: the default
    deadline.state(None)
    deadline.state(30_000)  # longer than the default: a stated timeout replaces it
    assert deadline.at == 130.0
    deadline.state(500)
    deadline.state(2_000)  # a later, longer one never lengthens it
    assert deadline.at == 100.5
    deadline.state_at(100.25)  # gRPC's own deadline, an instant
    assert deadline.at == 100.25
