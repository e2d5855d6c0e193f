"""`python -m bench.build_default --refs BEFORE AFTER`: the default bundle built from scratch at each git ref, one
after the other on this machine — wall time per step and the test accuracy per modality subset — so that a
change to training can show it kept the default bundle's figures (e.g. accuracies within 0.5 points and build
time within 10 %).

Each ref is cloned into a scratch directory (fresh data, feature cache and models) and runs
`python -m training build-default` with this checkout's virtual environment. Writes results.json and results.md
to --out (default bench/results/build-default). About 6.5 minutes per ref on 2 cores: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "build-default"
STEP = re.compile(r"^<== (.+): ([0-9.]+) s$")


def build(ref: str, scratch: Path) -> dict:
    """Clone `ref`, build the default bundle from scratch there; its steps, wall time and test accuracies."""
    checkout = scratch / ref
    subprocess.run(["git", "clone", "-q", str(report.REPO), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", ref], check=True)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training", "build-default", "--models-dir", "models",
                           "--progress", "false"], cwd=checkout, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build-default at {ref} failed:\n{done.stderr[-3000:]}")
    steps = {m[1]: float(m[2]) for line in done.stdout.splitlines() if (m := STEP.match(line))}
    evaluation = json.loads((checkout / "runs" / "tridigits" / "evaluation.json").read_text())["evaluation"]
    accuracy = {name: subset["accuracy"] for name, subset in evaluation["subsets"].items()}
    return {"commit": commit, "wall_s": round(wall, 1), "steps_s": steps, "accuracy": accuracy}


def markdown(results: dict) -> str:
    builds, machine = results["builds"], results["machine"]
    refs = list(builds)

    def row(title: str, values) -> str:
        return f"| {title} | " + " | ".join(str(v) for v in values) + " |"

    lines = ["# The default bundle built from scratch, before and after", "", f"Command: `{results['command']}`  ",
             f"Date: {machine['date']} · {machine['cpu_model']}, {machine['usable_cores']} cores · one run, the refs "
             "built one after the other", "", row("", (f"{r} ({builds[r]['commit'][:7]})" for r in refs)),
             "|---|" + "---:|" * len(refs), row("wall s", (builds[r]["wall_s"] for r in refs))]  # fmt: skip
    for step in builds[refs[0]]["steps_s"]:
        lines.append(row(f"{step} s", (builds[r]["steps_s"].get(step, "–") for r in refs)))
    for subset in builds[refs[0]]["accuracy"]:
        values = (f"{100 * builds[r]['accuracy'].get(subset, float('nan')):.1f}" for r in refs)
        lines.append(row(f"{subset} %", values))
    first, last = builds[refs[0]]["wall_s"], builds[refs[-1]]["wall_s"]
    return "\n".join([*lines, "", f"Wall time {refs[-1]} / {refs[0]}: {last / first:.2f}."]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.build_default", description=__doc__.splitlines()[0])
    parser.add_argument("--refs", nargs="+", default=["HEAD"], help="git refs, built in this order")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    results = {"command": report.command_line("bench.build_default", argv), "machine": report.machine_info()}
    with tempfile.TemporaryDirectory(prefix="fusionserve-build-default-") as scratch:
        results["builds"] = {ref: build(ref, Path(scratch)) for ref in args.refs}
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.out)
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
