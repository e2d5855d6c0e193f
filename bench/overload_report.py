"""results.md for bench/overload.py: the saturation sweep, the overload levels, and the targets as pass/fail."""

from __future__ import annotations

from pathlib import Path

from bench import report

SMOKE = "**SMOKE RUN: windows of a few seconds on a shared, busy machine. Not for quoting.**"
TARGETS = {
    "goodput_vs_peak": "goodput / peak",
    "p99_429_ms": "429 p99 ms",
    "count_5xx": "5xx count",
    "admitted_p99_ms": "admitted (200) p99 ms vs 2 × p99 at saturation",
}


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a (none seen)" if ok is None else ("PASS" if ok else "FAIL")


def header(results: dict) -> list[str]:
    plan, server = results["plan"], results["server"]
    s = results["settings"]
    retry = "waits the Retry-After it got" if plan.get("honor_retry_after", True) else "retries at once"
    return [
        "# fusionserve under overload",
        "",
        *([SMOKE, ""] if results["smoke"] else []),
        *report.run_lines(results),
        f"Bundle: `{results['bundle']['path']}`. Server: shipped settings; only {results['overridden_settings']} "
        f"set (plus host/port). Effective: max batch {s['max_batch_size']}, max queue delay "
        f"{s['max_queue_delay_ms']} ms, max queue wait {s['max_queue_wait_ms']} ms, max queued items "
        f"{s['max_queued_items']}, intra-op threads {s['intra_op_threads']}, preprocess threads "
        f"{s['preprocess_threads']}. Ready {server.get('ready_s')} s after spawn; RSS at the end "
        f"{server.get('rss_mb')} MB (peak {server.get('peak_rss_mb')} MB).  ",
        f"Load: closed loops, one keep-alive connection per client (a client whose connection was closed "
        f"reconnects; a refused client {retry}), multipart, one item per request; {plan['warmup_s']} s "
        f"warm-up, then {plan['sweep_s']} s per sweep point and {plan['overload_s']} s per overload level, "
        f"the levels in {plan.get('rounds', 1)} interleaved round(s) (order rotated each round). A round's peak "
        "= its best level; × peak = the median of the per-round ratios; "
        "latencies pooled over the rounds.",
    ]


def sweep_rows(result: dict) -> list[str]:
    rows = ["| clients | 200/s | p50 / p99 ms (200) | statuses |", "|---:|---:|---:|---|"]
    for p in result["sweep"]:
        mark = " **(saturating)**" if p["clients"] == result["saturating_clients"] else ""
        rows.append(
            f"| {p['clients']}{mark} | {_f(p['goodput'])} | {_f(p['ok']['p50_ms'])} / {_f(p['ok']['p99_ms'])} | "
            f"{p['status_counts']} |"
        )
    return rows


def level_rows(result: dict) -> list[str]:
    rows = [
        "| level | clients | goodput 200/s (× peak) | 200 p50 / p99 ms | 429s | 429 p50 / p99 ms | 5xx | "
        "Retry-After seen | connections opened | server / client cores |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for lv in result["levels"]:
        ok, rej = lv["ok"], lv["rejected_429"]
        rows.append(
            f"| {lv['multiple']}× | {lv['clients']} | {_f(lv['goodput'])} ({lv['vs_peak']:.2f}; rounds "
            f"{', '.join(f'{r:.2f}' for r in lv['vs_peak_rounds'])}) | "
            f"{_f(ok['p50_ms'])} / {_f(ok['p99_ms'])} | {lv['status_counts'].get('429', 0)} | "
            f"{_f(rej['p50_ms'], 2)} / {_f(rej['p99_ms'], 2)} | {lv['count_5xx']} | "
            f"{lv['retry_after_values'] or '–'} | "
            f"{lv['connections_opened']} | {_f(lv.get('server_cpu_cores'), 2)} / {_f(lv.get('client_cpu_cores'), 2)} |"
        )
    return rows


def target_rows(result: dict) -> list[str]:
    levels = result["levels"]
    rows = [
        "| target | limit | " + " | ".join(f"{lv['multiple']}×" for lv in levels) + " |",
        "|---|---|" + "---|" * len(levels),
    ]
    for key, title in TARGETS.items():
        cells = [f"{_verdict(lv['targets'][key]['pass'])} ({lv['targets'][key]['value']})" for lv in levels]
        rows.append(f"| {title} | {levels[0]['targets'][key]['limit']} | " + " | ".join(cells) + " |")
    return rows


def write_markdown(results: dict, out: Path) -> Path:
    lines = header(results)
    for name, result in results["workloads"].items():
        lines += [
            "",
            f"## {name}",
            "",
            f"Saturating concurrency {result['saturating_clients']} clients (sweep); peak {result['peak']:.1f} "
            f"req/s (each round's best level, median of rounds {result['peak_rounds']}); p99 at saturation (1×) "
            f"{_f(result['saturated_p99_ms'])} ms.",
            "",
            *sweep_rows(result),
            "",
            *level_rows(result),
            "",
            *target_rows(result),
        ]
    lines += ["", "Latency runs from sending the request to its last response byte, per status.", ""]
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path
