"""``poisonlab demo``'s procedure: every module's small experiment, in parallel lanes, into one report.

Each step runs in a fresh spawned process with one torch thread (``run_step``), so its numbers do not
depend on which steps ran before it or beside it: ``lanes`` processes run at once (2: both cores of a
small machine), the longest steps first (``RUN_ORDER``), the next step starting when a lane frees up.
The terminal shows a heading when a step starts and its summary line when it ends; everything a step
prints itself (progress bars, notes) goes to ``logs/STEP.log`` in the output folder. The report and
``metrics.json`` keep the order of ``STEPS`` whatever order the steps finished in.

Light on purpose (no torch at import): ``poisonlab.commands.demo`` builds ``DemoConfig`` from it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import resource
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from labcore.errors import InputError
from poisonlab.cache import cache_root

# step → (module with ``run(out, size, seed, report, cores) -> dict``, heading)
STEPS: dict[str, tuple[str, str]] = {
    "fed": ("poisonlab.demo_fed", "Federated backdoor: one-shot model replacement (Bagdasaryan et al. 2020)"),
    "nlp": ("poisonlab.demo_nlp", "Concealed trigger-phrase poisons on SST-2 (Wallace et al. 2021)"),
    "unlearn": ("poisonlab.demo_unlearn", "Unlearning verification with an LSB watermark (Athena)"),
    "t2i": ("poisonlab.demo_t2i", "Text-to-image pixel backdoor on the MNIST base (BadT2I)"),
}
RUN_ORDER = ("nlp", "t2i", "fed", "unlearn")
"""Longest first (measured with ``scripts/bench_demo.py``), so the short steps fill the lane that frees up."""
SIZES = ("tiny", "quick", "full")


@dataclass
class DemoConfig:
    """``poisonlab demo``: every step at ``size`` (tiny, quick or full), seeded by ``seed``; ``steps`` picks
    some of them (empty: all); ``lanes`` steps run at once, each a process with one torch thread (1: one
    after another; the numbers are the same)."""

    size: str = "full"
    seed: int = 0
    steps: list[str] = field(default_factory=list)
    lanes: int = 2

    def validate(self) -> None:
        if self.size not in SIZES:
            raise InputError(f"demo size {self.size!r} is unknown; use one of {', '.join(SIZES)}")
        unknown = sorted(set(self.steps) - set(STEPS))
        if unknown:
            raise InputError(f"demo step(s) {', '.join(unknown)} unknown; use some of {', '.join(STEPS)}")
        if self.lanes < 1:
            raise InputError(f"demo lanes must be >= 1 (1: one step after another), got {self.lanes}")


@dataclass
class StepResult:
    """What a step process sends back: its summary, its report blocks (HTML), wall and CPU seconds."""

    summary: dict
    blocks: list[str]
    seconds: float
    cpu_seconds: float


def user_cache(kind: str) -> Path:
    """``cache_root()/KIND``: where the demo keeps what it trains once (the T2I base, the NLP surrogate)
    for later runs to reuse."""
    return cache_root() / kind


def cache_key(recipe: dict) -> str:
    """16 hex digits of the SHA-256 of ``recipe`` as sorted JSON: one cache entry per recipe."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def summary_line(name: str, s: dict) -> str:
    """One line of headline numbers for a step's returned summary."""
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    if name == "fed":
        clean, bad = s["fed-clean"], s["fed-replacement"]
        hit = bad["attacks"][0] if bad["attacks"] else {}
        return (f"clean MTA {f(clean['final_main_accuracy'])}; model replacement: ASR {f(hit.get('attack_success_rate_after'))} "
                f"after round {hit.get('round', '–')}, MTA {f(bad['final_main_accuracy'])}, "
                f"backdoor lifespan {bad['backdoor_lifespan'] if bad['backdoor_lifespan'] is not None else '–'} rounds")
    if name == "nlp":
        c = s["concealment"]["concealed"]
        read = min(500, c["pool"])  # nlp_poison.concealment.INSPECTED, not imported: this module stays light
        found = ", ".join(f"{k} {h['max_fuzzy']:.0f} / {h['fuzzy_found']} / {h['neighbour_ranked_found']} / {h['neighbour_flagged']}"
                          for k, h in s["concealment"].items())
        return ("effectiveness " + ", ".join(f"{k} {f(v)}" for k, v in s["effectiveness"].items())
                + f"; of {c['poisons']} poisons, max fuzzy ratio / found in the first {read} of {c['pool']} by the fuzzy ranking / by the "
                f"neighbour ranking / flagged by the 50-neighbour filter ({read} at random: {c['chance_found']:g}): {found}")
    if name == "unlearn":
        return "; ".join(f"{b}: {v['verdict']} after {v['queries']} queries" for b, v in s.items())
    if name == "t2i":
        return (f"ASR {f(s['attack_success_rate'])} (base {f(s['asr_base_triggered'])}), clean accuracy "
                f"{f(s['bd_clean_accuracy'])} (base {f(s['base_clean_accuracy'])})")
    return ", ".join(f"{k} {v}" for k, v in s.items())


def run_step(name: str, stage: Path, size: str, seed: int, cores: int | None) -> StepResult:
    """One step in this (fresh) process: one torch thread, its own output into ``stage/logs/NAME.log``,
    the libraries' logging turned down; ``cores`` is what the step may use for its own workers."""
    import torch

    from poisonlab.quiet import quiet_libraries
    from poisonlab.report import Report

    torch.set_num_threads(1)
    log = stage / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8", buffering=1) as stream:
        sys.stdout = sys.stderr = stream
        quiet_libraries()
        report = Report(name)
        summary = importlib.import_module(STEPS[name][0]).run(stage, size, seed, report, cores)
    cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
    return StepResult(summary, report.blocks, time.perf_counter() - start, cpu)


def run_steps(stage: Path, steps: list[str], cfg: DemoConfig, echo: Callable[[str], None]) -> tuple[dict, list[str], list[dict]]:
    """Run ``steps`` in ``cfg.lanes`` processes; returns the summaries, the report blocks (a ``<section id=STEP>``
    per step, in ``STEPS`` order) and the summary table's rows."""
    order = [s for s in RUN_ORDER if s in steps]
    cores = 1 if cfg.lanes > 1 and len(order) > 1 else None
    done: dict[str, StepResult] = {}
    running: dict[Future, str] = {}
    with ProcessPoolExecutor(max_workers=cfg.lanes, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        while order or running:
            while order and len(running) < cfg.lanes:
                name = order.pop(0)
                echo(f"\n[{len(done) + len(running) + 1}/{len(steps)}] {STEPS[name][1]}  (started; log: logs/{name}.log)")
                running[pool.submit(run_step, name, stage, cfg.size, cfg.seed, cores)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                done[name] = result = future.result()
                echo(f"  {name}: {summary_line(name, result.summary)} ({result.seconds:.0f} s, CPU {result.cpu_seconds:.0f} s)")
    blocks, rows = [], []
    for name in steps:
        blocks += [f'<section id="{name}">', *done[name].blocks, "</section>"]
        rows.append({"step": name, "experiment": STEPS[name][1], "result": summary_line(name, done[name].summary),
                     "seconds": round(done[name].seconds), "CPU seconds": round(done[name].cpu_seconds)})
    return {name: done[name].summary for name in steps}, blocks, rows


def run_demo(cfg: DemoConfig, out: Path, echo: Callable[[str], None]) -> None:
    """The whole demo into ``out`` (staged, renamed when complete): config.yaml, metrics.json, report.html,
    each step's run directories and logs."""
    from poisonlab.report import Report
    from poisonlab.runs import staged_output, write_json, write_yaml

    cfg.validate()
    steps = [name for name in STEPS if not cfg.steps or name in cfg.steps]
    start = time.perf_counter()
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", cfg)
        summaries, blocks, rows = run_steps(stage.resolve(), steps, cfg, echo)
        report = Report("poisonlab demo")
        report.heading("Summary")
        report.table(rows, f"demo size {cfg.size}, seed {cfg.seed}, {cfg.lanes} lane(s); each step's run directories sit beside this report")
        report.blocks += blocks
        write_json(stage / "metrics.json", {"size": cfg.size, "seed": cfg.seed, **summaries})
        report.save(stage / "report.html")
    echo(f"\ndemo report: {out / 'report.html'} ({time.perf_counter() - start:.0f} s)")
