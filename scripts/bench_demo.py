"""Wall and CPU time of ``poisonlab demo`` per step, first run (empty cache) and cached run, with the load.

    python scripts/bench_demo.py [--size quick] [--out runs/bench-demo] [--runs first,cached] [--lanes 2] [--threads 1]

``first`` points ``POISONLAB_CACHE_DIR`` at an empty folder, so the T2I step pretrains the demo base (and its
digit classifier) and the NLP step fine-tunes its surrogate, as on a fresh clone; ``cached`` reruns with
that folder filled, as every later run. Each run is a fresh ``python -m poisonlab demo --lanes N``
process with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to ``--threads``; the per-step wall and CPU
seconds are the demo's own summary lines (each step is one process), the total CPU time is the demo's
and its children's (user + system), given beside the wall time because on a shared machine the wall
time follows the load. Writes ``<out>/results.json`` and prints a markdown table (steps × runs, wall
and CPU seconds, total, 1-minute load average before and after each run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"^  (\w+): (.*) \((\d+) s, CPU (\d+) s\)$")


def load_average() -> float:
    return os.getloadavg()[0]


def run_demo(size: str, out: Path, cache: Path, threads: int, lanes: int) -> dict:
    """One demo process; its per-step seconds and summary lines, the total wall time and the load."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "POISONLAB_CACHE_DIR": str(cache), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    env.pop("POISONLAB_T2I_BASE", None)
    load_before = load_average()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "poisonlab", "demo", f"--{size}", "--lanes", str(lanes), "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    steps = {m[1]: {"seconds": int(m[3]), "cpu_s": int(m[4]), "summary": m[2]} for m in map(STEP_LINE.match, proc.stdout.splitlines()) if m}
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "steps": steps, "load_before": load_before, "load_after": load_average(),
            "stderr_tail": proc.stderr[-500:]}


def table(results: dict[str, dict]) -> str:
    names = list(results)
    steps = list(next(iter(results.values()))["steps"])
    lines = ["| step | " + " | ".join(f"{n}: wall s (CPU s)" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(
            f"{results[n]['steps'][step]['seconds']} ({results[n]['steps'][step]['cpu_s']})" for n in names) + " |")
    lines.append("| **total wall** | " + " | ".join(f"**{results[n]['wall_s']:.0f}**" for n in names) + " |")
    lines.append("| process CPU time (s) | " + " | ".join(f"{results[n]['cpu_s']:.0f}" for n in names) + " |")
    lines.append("| load 1-min before → after | " + " | ".join(
        f"{results[n]['load_before']:.1f} → {results[n]['load_after']:.1f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=["tiny", "quick", "full"], default="quick")
    p.add_argument("--out", type=Path, default=Path("runs/bench-demo"))
    p.add_argument("--runs", type=lambda s: s.split(","), default=["first", "cached"], help="first and/or cached")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lanes", type=int, default=2, help="the demo's --lanes (steps at once)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = (args.out / "cache").resolve()
    results = {}
    for name in args.runs:
        if name == "first":
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        results[name] = run_demo(args.size, args.out / f"demo-{name}", cache, args.threads, args.lanes)
        print(f"{name}: {results[name]['wall_s']:.0f} s " + json.dumps({k: v["seconds"] for k, v in results[name]["steps"].items()}),
              flush=True)
        for step, v in results[name]["steps"].items():
            print(f"  {step}: {v['summary']}", flush=True)
    (args.out / "results.json").write_text(json.dumps({"size": args.size, "threads": args.threads, "lanes": args.lanes, "cpus": os.cpu_count(),
                                                       "runs": results}, indent=2), encoding="utf-8")
    print(table(results))


if __name__ == "__main__":
    main()
