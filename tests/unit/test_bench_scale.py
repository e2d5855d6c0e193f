"""bench/scale.py's pieces without a server: the process-tree CPU reader (bench/server.py), the cores projection,
the ratios to one process and the targets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import scale, scale_report
from bench.server import cpu_seconds_of, process_tree, tree_cpu_seconds

BUSY_THEN_SLEEP = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(60)"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads Linux /proc")
def test_the_tree_counts_a_busy_child_the_parent_alone_does_not():
    child = subprocess.Popen([sys.executable, "-c", BUSY_THEN_SLEEP])
    try:
        deadline = time.monotonic() + 30
        while (cpu_seconds_of(child.pid) or 0.0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        child_cpu = cpu_seconds_of(child.pid)
        parent_alone = cpu_seconds_of(os.getpid())
        tree = tree_cpu_seconds(os.getpid())
        assert child.pid in process_tree(os.getpid())
        assert child_cpu >= 0.3
        assert tree >= parent_alone + child_cpu - 0.02  # read after both: only ever more
    finally:
        child.kill()
        child.wait()
    assert child.pid not in process_tree(os.getpid())


def test_a_process_without_children_is_its_own_tree():
    assert process_tree(os.getpid() + 10**7) == [os.getpid() + 10**7]  # no such process: no children either
    assert tree_cpu_seconds(os.getpid() + 10**7) is None


def test_cores_for_ten_thousand_items_per_second():
    assert scale_report.cores_for(10_000, 0.40) == 4.0
    assert scale_report.cores_for(10_000, 2.5) == 25.0
    assert scale_report.cores_for(10_000, None) is None


def run(req_s: float, cpu_ms: float, c1_p50: float | None = None) -> dict:
    result = {"closed": {"throughput": req_s, "server_cpu_ms_per_request": cpu_ms}}
    return result | ({"c1": {"p50_ms": c1_p50}} if c1_p50 is not None else {})


def test_ratios_are_to_one_process_and_skip_modes_that_did_not_run():
    modes = {
        "one-process": {"workloads": {"text-only": run(1000, 0.5)}},
        "front-ends-2": {"workloads": {"text-only": run(1700, 0.45)}},
        "independent-1": {"skipped": "equals one-process"},
        "independent-2": {"error": "exited"},
    }
    ratios = scale_report.ratios(modes)
    assert ratios == {
        "text-only": {
            "front-ends-2": {
                "req_s_vs_one_process": 1.7,
                "cpu_ms_per_request": 0.45,
                "one_process_cpu_ms_per_request": 0.5,
            }
        }
    }
    assert scale_report.ratio(1, 0) is None and scale_report.ratio(None, 3) is None


def test_targets_met_not_met_and_not_measured():
    standin_modes = {
        "one-process": {"workloads": {"text-only": run(1000, 0.5), "image-only": run(100, 3.0)}},
        "front-ends-2": {"workloads": {"text-only": run(1700, 0.38), "image-only": run(120, 3.5)}},
    }
    default_modes = {
        "one-process": {"workloads": {"text-only": run(200, 5.0, c1_p50=10.0)}},
        "default": {"workloads": {"text-only": run(196, 5.0, c1_p50=10.2)}},
    }
    bundles = {
        "standin": {"modes": standin_modes, "ratios": scale_report.ratios(standin_modes)},
        "default": {"modes": default_modes, "ratios": scale_report.ratios(default_modes)},
    }
    met = {row["target"]: row["met"] for row in scale_report.targets(bundles)}
    assert met["stand-in text-only: front-ends-2 / one-process req/s"] is True  # 1.7 >= 1.6
    assert met["stand-in image-only: front-ends-2 / one-process req/s"] is False  # 1.2 < 1.25
    assert met["stand-in text-only: server CPU ms/request, one-process"] is False  # 0.5 > 0.40
    assert met["stand-in text-only: server CPU ms/request, front-ends-2"] is True
    assert met["stand-in jpeg-only: server CPU ms/request, one-process"] is None  # not run
    assert met["default bundle text-only: default setting / one-process req/s"] is True  # 0.98
    assert met["default bundle text-only: one-process / default setting c=1 p50"] is True  # 10 / 10.2 = 0.98


def test_modes_skip_independent_1_and_front_ends_without_the_setting():
    modes = {m.name: m for m in scale.modes_for(list(scale.KINDS), (1, 2), real=False, workers_setting=False)}
    assert list(modes) == ["one-process", "front-ends-1", "front-ends-2", "independent-1", "independent-2"]
    assert modes["one-process"].workers is None  # unset: the only mode a build without the setting has
    assert modes["front-ends-2"].skipped and modes["independent-1"].skipped == "equals one-process"
    assert modes["independent-2"].servers == 2 and not modes["independent-2"].skipped
    modes = {m.name: m for m in scale.modes_for(list(scale.KINDS), (2,), real=True, workers_setting=True)}
    assert modes["one-process"].workers == 0 and modes["default"].workers is None
    assert modes["front-ends-2"].workers == 2 and not modes["front-ends-2"].skipped
