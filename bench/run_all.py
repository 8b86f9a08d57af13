"""Run every bench script in bench/ and print what each one prints (`make bench`).

Run: ``python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...]``.

Scripts are found, not listed: every ``bench/bench_*.py`` (micro-benchmarks, in name order)
and then ``bench/sipp_load.py`` (the SIPp full-call harness, which needs SIPp and takes the
longest). Each runs in its own process with the repository on ``PYTHONPATH`` and a time bound;
a script that fails or overruns is reported and the others still run. ``--quick`` passes
``--quick`` to sipp_load.py (its < 60 s version). Nothing is asserted on any figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Per-script bounds in seconds: the load harness runs < 5 minutes by design.
TIMEOUT = {"sipp_load": 420}
DEFAULT_TIMEOUT = 300


def scripts() -> list[Path]:
    """Every bench script, micro-benchmarks first, the SIPp harness last."""
    found = sorted(BENCH.glob("bench_*.py"))
    load = BENCH / "sipp_load.py"
    if load.exists():
        found.append(load)
    return found


def run(script: Path, quick: bool) -> int:
    """Run one script (bounded), streaming its output; returns its exit code."""
    args = [sys.executable, str(script)]
    if quick and script.stem == "sipp_load":
        args.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print(f"==== {script.name} ({' '.join(args[2:]) or 'defaults'})", flush=True)
    start = time.monotonic()
    try:
        code = subprocess.run(args, cwd=REPO, env=env,
                              timeout=TIMEOUT.get(script.stem, DEFAULT_TIMEOUT)).returncode
    except subprocess.TimeoutExpired:
        print(f"==== {script.name}: stopped after {TIMEOUT.get(script.stem, DEFAULT_TIMEOUT)} s",
              flush=True)
        return 124
    print(f"==== {script.name}: exit {code} after {time.monotonic() - start:.0f} s\n", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the selected scripts; exit 1 when any of them failed."""
    parser = argparse.ArgumentParser(description="Run every bench script in bench/.")
    parser.add_argument("--quick", action="store_true", help="sipp_load.py --quick")
    parser.add_argument("--only", nargs="*", default=[], help="script names (stem) to run")
    parser.add_argument("--skip", nargs="*", default=[], help="script names (stem) to skip")
    args = parser.parse_args(argv)
    failed = []
    for script in scripts():
        if (args.only and script.stem not in args.only) or script.stem in args.skip:
            continue
        if run(script, args.quick) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
