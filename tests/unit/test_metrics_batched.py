"""A batch's observations written at once (service/metrics.py observe_many) read back exactly as the same
observations made one by one: every bucket, the count and the sum."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.metrics import LATENCY_BUCKETS, observe_many, observe_repeated


def histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("waits_seconds", "waits", ["model"], buckets=LATENCY_BUCKETS, registry=registry)


def samples(registry: CollectorRegistry) -> dict:
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_observe_many_reads_back_as_one_observation_each():
    amounts = list(np.random.default_rng(0).exponential(0.05, 500)) + [0.0, 0.001, 30.0, 31.0, 1e9]
    one_by_one, at_once = histogram(), histogram()
    for amount in amounts:
        one_by_one[1].labels("m").observe(amount)
    observe_many(at_once[1].labels("m"), amounts)
    expected, got = samples(one_by_one[0]), samples(at_once[0])
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12), key
    assert generate_latest(at_once[0]).count(b"_bucket") == len(LATENCY_BUCKETS) + 1


def test_observe_repeated_counts_every_item_of_a_batch():
    registry, waits = histogram()
    observe_repeated(waits.labels("m"), 0.003, 32)
    observe_repeated(waits.labels("m"), 0.003, 0)
    found = samples(registry)
    assert found[("waits_seconds_count", (("model", "m"),))] == 32
    assert math.isclose(found[("waits_seconds_sum", (("model", "m"),))], 0.096)
    assert found[("waits_seconds_bucket", (("le", "0.0025"), ("model", "m")))] == 0
    assert found[("waits_seconds_bucket", (("le", "0.005"), ("model", "m")))] == 32
