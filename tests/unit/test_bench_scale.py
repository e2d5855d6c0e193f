"""bench/scale.py's pieces without a server: the process-tree CPU reader (bench/server.py), the role of each
server process and the per-role arithmetic (bench/roles.py), the text-json workload, the cores and engine
projections, the ratios to one process and the targets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import orjson
import pytest

from bench import roles, scale, scale_report, scale_role_tables, scale_targets
from bench.roles import Proc, classify, per_request_us, seconds_by_label
from bench.scale_workloads import json_body
from bench.server import cpu_seconds_of, process_tree, tree_cpu_seconds
from tests.waiting import wait_until

LINUX = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads Linux /proc")
BUSY_THEN_SLEEP = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(60)"
HOLD_FD = "import socket, sys, time\ns = socket.socket(fileno=int(sys.argv[1]))\ntime.sleep(60)"
BIND_UNIX = (
    "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\ntime.sleep(60)"
)
SPAWNED = "python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=10) --multiprocessing-fork"
TRACKER = "python -B -c from multiprocessing.resource_tracker import main;main(9)"


@LINUX
def test_the_tree_counts_a_busy_child_the_parent_alone_does_not():
    child = subprocess.Popen([sys.executable, "-c", BUSY_THEN_SLEEP])
    try:
        wait_until(lambda: (cpu_seconds_of(child.pid) or 0.0) >= 0.3, what="the child's 0.3 s of CPU")
        child_cpu = cpu_seconds_of(child.pid)
        parent_alone = cpu_seconds_of(os.getpid())
        tree = tree_cpu_seconds(os.getpid())
        assert child.pid in process_tree(os.getpid())
        assert tree >= parent_alone + child_cpu - 0.02  # read after both: only ever more
    finally:
        child.kill()
        child.wait()
    assert child.pid not in process_tree(os.getpid())


def test_a_process_without_children_is_its_own_tree():
    assert process_tree(os.getpid() + 10**7) == [os.getpid() + 10**7]  # no such process: no children either
    assert tree_cpu_seconds(os.getpid() + 10**7) is None


def proc(pid: int, ppid: int, cmdline: str = SPAWNED, sockets: tuple[str, ...] = ()) -> Proc:
    return Proc(pid, ppid, cmdline, frozenset(sockets))


def test_roles_by_what_each_process_serves_not_by_its_command_line():
    procs = [
        proc(10, 1, "python -m service serve", ("500",)),  # the supervisor holds the listener too
        proc(11, 10, TRACKER),
        proc(14, 10, sockets=("500", "601")),  # front-ends: the listener (and engine connections without a path)
        proc(12, 10, sockets=("700", "701")),  # engine 1 (its socket's path says so), started first
        proc(13, 10, sockets=("500",)),
        proc(15, 10, sockets=("800",)),  # engine 0
        proc(16, 12),  # below an engine: the engine's
        proc(17, 10),  # a spawned child that serves nothing we know
    ]
    labels = classify(procs, 10, listening={"500"}, engine_sockets={"700": 1, "701": 1, "800": 0})
    assert labels == {
        10: "supervisor",
        11: "helper",
        13: "front-end-0",  # numbered in pid order
        14: "front-end-1",
        15: "engine-0",  # numbered by the socket's index
        12: "engine-1",
        16: "engine-1",
        17: "other",
    }


def test_a_tree_without_front_ends_or_engines_is_one_process():
    procs = [proc(10, 1, "python -m service serve", ("500",)), proc(11, 10, TRACKER)]
    assert classify(procs, 10, {"500"}, {}) == {10: "one-process", 11: "helper"}
    assert classify([proc(10, 1)], 10, set(), {}) == {10: "one-process"}


@LINUX
def test_front_end_and_engine_found_from_proc(tmp_path, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    commands = [[sys.executable, "-c", HOLD_FD, str(listener.fileno())], [sys.executable, "-c", BIND_UNIX]]
    commands[1].append(str(tmp_path / "engine-3.sock"))
    children = [subprocess.Popen(commands[0], pass_fds=[listener.fileno()]), subprocess.Popen(commands[1])]
    try:
        expected = {os.getpid(): "supervisor", children[0].pid: "front-end-0", children[1].pid: "engine-0"}
        # the tree is this process and these two: whatever else the test run left below it is not the subject
        monkeypatch.setattr(roles, "process_tree", lambda root: [root, *(child.pid for child in children)])
        wait_until(lambda: roles.server_labels(os.getpid(), port) == expected, what=f"labels {expected}")
        assert roles.listening_inodes(port) <= roles.socket_inodes(children[0].pid)
        assert set(roles.engine_socket_inodes().values()) >= {3}
        meter = roles.RoleMeter([SimpleNamespace(process=SimpleNamespace(pid=os.getpid()), port=port)])
        assert set(meter()) == {"client", "server"} and meter()["server"] >= 0.0
        window = meter.window(requests=100)
        assert window["processes"] == ["engine-0", "front-end-0", "supervisor"] and not window["processes_changed"]
        assert {"supervisor", "front-ends", "engines", "tree"} <= set(window["cpu_us_per_request"])
    finally:
        for child in children:
            child.kill()
            child.wait()
        listener.close()


def test_cpu_per_label_over_a_window():
    start = {10: ("supervisor", 1.0), 12: ("engine-0", 5.0), 13: ("front-end-0", 2.0), 19: ("front-end-1", 9.0)}
    end = {10: ("supervisor", 1.001), 12: ("engine-0", 5.4), 13: ("front-end-0", 2.8), 14: ("front-end-1", 0.1)}
    used = seconds_by_label(start, end)  # 19 exited (its window's CPU is lost), 14 started inside the window
    assert used == pytest.approx({"supervisor": 0.001, "engine-0": 0.4, "front-end-0": 0.8, "front-end-1": 0.1})


def test_per_request_figures_sums_and_the_engine_projection():
    used = {"engine-0": 0.4, "front-end-1": 0.45, "supervisor": 0.001, "front-end-0": 0.35, "helper": 0.0}
    us = per_request_us(used, requests=1000)
    assert list(us) == [
        "supervisor", "front-end-0", "front-end-1", "front-ends", "engine-0", "engines", "helper", "tree",
    ]  # fmt: skip
    assert us["front-ends"] == 800.0 and us["engines"] == 400.0 and us["supervisor"] == 1.0
    assert us["tree"] == 1201.0
    assert roles.engine_requests_per_s(us) == 2500.0  # 1e6 / 400 µs
    one = per_request_us({"one-process": 0.679}, requests=1000)
    assert one == {"one-process": 679.0, "tree": 679.0} and roles.engine_requests_per_s(one) is None
    assert per_request_us(used, requests=0) is None and roles.engine_requests_per_s(None) is None


def test_the_role_table_shows_each_front_end_and_the_sum():
    us = {"supervisor": 1.0, "front-end-0": 460.0, "front-end-1": 457.0, "front-ends": 917.0, "engine-0": 420.0}
    assert scale_role_tables.role_cell(us | {"engines": 420.0}, "front-end", "front-ends") == "917 (460 + 457)"
    assert scale_role_tables.role_cell(us | {"engines": 420.0}, "engine", "engines") == "420"
    assert scale_role_tables.role_cell({"one-process": 679.0, "tree": 679.0}, "engine", "engines") == "–"


def test_text_json_is_one_text_per_json_classify():
    body, headers = json_body("one two three")
    assert orjson.loads(body) == {"inputs": [{"text": "one two three"}]}
    assert headers == {"content-type": "application/json"}


def test_cores_for_ten_thousand_items_per_second():
    assert scale_report.cores_for(10_000, 0.40) == 4.0
    assert scale_report.cores_for(10_000, 2.5) == 25.0
    assert scale_report.cores_for(10_000, None) is None


def run(req_s: float, cpu_ms: float, c1_p50: float | None = None, us: dict | None = None) -> dict:
    result = {"closed": {"throughput": req_s, "server_cpu_ms_per_request": cpu_ms}}
    result |= {"roles": {"cpu_us_per_request": us}} if us is not None else {}
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
    met = {row["target"]: row["met"] for row in scale_targets.targets(bundles)}
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


def test_per_role_targets_and_reported_figures():
    one = {"one-process": 679.0, "tree": 679.0}
    split = {"supervisor": 2.0, "front-ends": 700.0, "engines": 55.0, "tree": 757.0}  # 757 / 679 = 1.115
    split_2 = {"supervisor": 2.0, "front-ends": 917.0, "engines": 420.0, "tree": 1339.0}
    standin = {
        "one-process": {"workloads": {"text-json": run(1516, 0.679, c1_p50=2.0, us=one)}},
        "front-ends-1": {"workloads": {"text-json": run(1201, 0.757, c1_p50=2.8, us=split)}},  # c=1: 1.4×
        "front-ends-2": {"workloads": {"text-json": run(1234, 1.339, us=split_2)}},
    }
    default = {
        "one-process": {"workloads": {"jpeg-only": run(144, 12.2, c1_p50=9.9)}},
        "default": {"workloads": {"jpeg-only": run(149.3, 11.8, c1_p50=9.7)}},
    }
    bundles = {
        "standin": {"modes": standin, "ratios": scale_report.ratios(standin)},
        "default": {"modes": default, "ratios": scale_report.ratios(default)},
    }
    rows = {row["target"]: row for row in scale_targets.targets(bundles, concurrency=32)}
    assert rows["stand-in text-json, front-ends-1, c=32: engine CPU µs/request"]["met"] is True  # 55 <= 60
    assert rows["stand-in text-json, front-ends-2, c=32: engine CPU µs/request"]["met"] is False
    assert rows["stand-in text-json: front-ends-1 / one-process CPU per request"]["value"] == 1.115
    assert rows["stand-in text-json: front-ends-1 / one-process CPU per request"]["met"] is True
    assert rows["stand-in text-json: front-ends-1 / one-process c=1 p50"]["met"] is False  # 1.4 > 1.3
    assert rows["stand-in jpeg-only: front-ends-1 / one-process c=1 p50"]["met"] is None  # not run
    reported = rows["default bundle jpeg-only, default setting: c=32 req/s"]
    assert reported["value"] == 149.3 and reported["op"] is None and reported["met"] is None
    assert rows["default bundle jpeg-only, default setting: c=1 p50 ms"]["value"] == 9.7
    table = "\n".join(scale_report.target_rows(list(rows.values())))
    assert "| default bundle jpeg-only, default setting: c=32 req/s | 149.30 | reported |" in table
    assert "Not measured in this run: " in table and "stand-in jpeg-only: front-ends-1" in table.splitlines()[-1]


def test_a_focused_run_from_the_command_line():
    args = scale.parse_args(["--bundles", "standin", "--workloads", "text-json,jpeg-only,all-three",
                             "--kinds", "one-process,front-ends", "--ns", "1", "--intra-op-threads", "1"])  # fmt: skip
    plan = scale.make_plan(args)
    assert args.modes == "one-process,front-ends" and plan.ns == (1,) and plan.intra_op_threads == 1
    assert plan.concurrency == 32 and plan.loop in ("uvloop", "asyncio")
    modes = scale.modes_for(args.modes.split(","), plan.ns, real=False, workers_setting=True)
    assert [m.name for m in modes] == ["one-process", "front-ends-1"] and all(m.c1 for m in modes)
    assert not any(m.c1 for m in scale.modes_for(["independent"], (2,), real=False, workers_setting=True))
    with pytest.raises(SystemExit):
        scale.parse_args(["--workloads", "text-xml"])
