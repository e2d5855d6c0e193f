"""Door admission's meter (service/admission.py): the drain rate it judges waits by, and the Retry-After it
tells refused clients."""

from __future__ import annotations

from service.admission import MAX_RETRY_AFTER_S, DrainMeter

BASE = 1000.0


def completed(meter: DrainMeter, per_second: list[int], start: float = BASE) -> None:
    for second, count in enumerate(per_second):
        for k in range(count):
            meter.in_flight += 1
            meter.completed(start + second + k / count)


def test_drain_rate_is_the_best_recent_second_so_overload_cannot_shrink_it():
    meter = DrainMeter(window_s=10)
    completed(meter, [300, 120, 40])  # refusals eat CPU: the pace falls second by second
    assert meter.rate(BASE + 3.5) == 300.0  # the capacity, not the last second's 40
    assert meter.rate(BASE + 13.5) is None  # idle past the window: cold again, nothing to judge by


def test_retry_after_is_the_admitted_work_s_wait_when_few_are_refused():
    meter = DrainMeter()
    completed(meter, [200])
    meter.in_flight = 300  # 1.5 s of admitted work at 200/s
    assert meter.retry_after_s(BASE + 1.5) == 2
    meter.in_flight = 30
    assert meter.retry_after_s(BASE + 1.5) == 1  # never 0: whole seconds, at least one


def test_retry_after_grows_with_the_refused_demand_so_refused_clients_do_not_return_together():
    meter = DrainMeter()
    completed(meter, [200])
    meter.in_flight = 40
    for k in range(900):  # 900 refused in the last second: 4.5 s of work at 200/s
        meter.refused(BASE + 1 + k / 900)
    assert meter.retry_after_s(BASE + 2.2) == 5
    for _ in range(1200):  # the current second's refusals count as soon as they outnumber the last's
        meter.refused(BASE + 2.3)
    assert meter.retry_after_s(BASE + 2.4) == 6
    assert meter.retry_after_s(BASE + 4.5) == 1  # two quiet seconds later: back to the admitted work's wait


def test_retry_after_is_capped_and_needs_a_measured_rate():
    meter = DrainMeter()
    for _ in range(100):
        meter.refused(BASE)
    assert meter.retry_after_s(BASE + 0.5) == 1  # cold (no drain rate): nothing to scale by
    completed(meter, [10], start=BASE + 1)
    for _ in range(5000):
        meter.refused(BASE + 2.1)
    assert meter.retry_after_s(BASE + 2.5) == MAX_RETRY_AFTER_S


def test_only_served_requests_count_toward_the_drain_rate_but_every_one_leaves_in_flight():
    meter = DrainMeter()
    for k in range(300):  # a burst of cheap refusals (4xx) and callers gone (499) after admission
        meter.admitted()
        meter.completed(BASE + k / 300, served=False)
    assert meter.in_flight == 0
    assert meter.rate(BASE + 1.5) is None  # no capacity measured from them: the door stays as tight
    completed(meter, [20], start=BASE + 1)
    assert meter.rate(BASE + 2.5) == 20.0  # only the 20 served count
