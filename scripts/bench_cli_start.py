"""CLI start-up time: median wall time of ``poisonlab --help`` and of argument errors, in fresh processes.

    python scripts/bench_cli_start.py [--repeats 5]

Each case runs ``python -m poisonlab ARGS`` from the repository root with this interpreter; the
figure is the median of ``--repeats`` runs (the target is ≤ 1 s for --help and argument errors).
Cases inside a command group also import that group's module, so they show which groups still
import heavy libraries at module level (``python -X importtime -m poisonlab ARGS`` tells which).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "--help": ["--help"],
    "unknown command": ["nosuch"],
    "demo: bad --seed": ["demo", "--seed", "x"],
    "demo --help": ["demo", "--help"],
    "fed run: missing CONFIG": ["fed", "run"],
    "nlp train: missing --out": ["nlp", "train"],
    "t2i train: missing --base": ["t2i", "train"],
    "unlearn verify: missing --model": ["unlearn", "verify"],
}


def time_once(args: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "poisonlab", *args], cwd=REPO, env=env, capture_output=True)
    return time.perf_counter() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top-level", action="store_true",
                        help="Only the cases that load no command group of another module (--help, demo).")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, python {sys.executable}")
    for name, argv in CASES.items():
        if args.top_level and argv[0] not in ("--help", "nosuch", "demo"):
            continue
        runs = [time_once(argv) for _ in range(args.repeats)]
        times = [t for t, _ in runs]
        print(f"{name:<32} median {statistics.median(times):6.2f} s  (min {min(times):.2f}, max {max(times):.2f}, "
              f"exit {runs[0][1]})")


if __name__ == "__main__":
    main()
