"""bench/scale.py's results.md tables of CPU per request per role (bench/roles.py) and of the engine projection."""

from __future__ import annotations

PROJECTED = ("text-json", "jpeg-only", "all-three")  # the projection table's columns first: text, JPEG, all three


def _f(value, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def role_cell(us: dict, role: str, total: str) -> str:
    """One role's µs per request: the sum, and each process's when there are several ("917 (460 + 457)")."""
    each = [value for label, value in us.items() if label.startswith(f"{role}-")]
    if total not in us:
        return "–"
    return _f(us[total]) + (f" ({' + '.join(_f(v) for v in each)})" if len(each) > 1 else "")


def role_rows(modes: dict) -> list[str]:
    """Per workload and mode: CPU µs per request of the whole tree and of each role, the client's, and the
    requests/s one engine process could take."""
    rows = [
        "| workload | mode | req/s | c=1 p50 ms | CPU µs/request: whole tree | supervisor | front-ends | engine | "
        "helpers | client µs/request (cores) | engine req/s (1e6 / µs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in workloads_of(modes):
        for mode, record in modes.items():
            result = record.get("workloads", {}).get(workload)
            if result is None or "roles" not in result:
                continue
            roles, closed = result["roles"], result["closed"]
            us = roles["cpu_us_per_request"] or {}
            c1 = result.get("c1", {}).get("p50_ms")
            changed = " (processes changed)" if roles["processes_changed"] else ""
            rows.append(
                f"| {workload} | {mode}{changed} | {_f(closed['throughput'], 1)} | {_f(c1, 2)} | {_f(us.get('tree'))} "
                f"| {_f(us.get('supervisor'))} | {role_cell(us, 'front-end', 'front-ends')} | "
                f"{role_cell(us, 'engine', 'engines')} | {_f(us.get('helper'))} | "
                f"{_f(roles['client_us_per_request'])} ({_f(closed.get('client_cpu_cores'), 2)}) | "
                f"{_f(roles['engine_requests_per_s'])} |"
            )
    return rows


def workloads_of(modes: dict) -> list[str]:
    return list(next((m["workloads"] for m in modes.values() if "workloads" in m), {}))


def projection_rows(modes: dict) -> list[str]:
    """Per front-ends-N mode: the requests/s one engine process could take, per workload (text, JPEG, all three
    first)."""
    measured = workloads_of(modes)
    columns = [w for w in PROJECTED if w in measured] + [w for w in measured if w not in PROJECTED]
    split = [mode for mode, record in modes.items() if mode.startswith("front-ends-") and "workloads" in record]
    if not split or not columns:
        return ["No front-ends-N mode was measured: no engine process to project."]
    rows = ["| mode | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for mode in split:
        runs = modes[mode]["workloads"]
        cells = [_f(runs.get(w, {}).get("roles", {}).get("engine_requests_per_s")) for w in columns]
        rows.append(f"| {mode} | " + " | ".join(cells) + " |")
    return rows


def role_section(modes: dict) -> list[str]:
    return [
        "CPU per request per role (µs; several front-ends or engines: the sum, then each):",
        "",
        *role_rows(modes),
        "",
        "Requests/s one engine process could take (1e6 / engine CPU µs per request, one core):",
        "",
        *projection_rows(modes),
        "",
    ]
