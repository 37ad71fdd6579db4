"""``poisonlab demo``: every module's quick experiment on the default small models and data.

Each step prints a heading and, when it finishes, one summary line; the libraries' own logging is
turned down to errors so that the steps' lines are what the user reads.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from labcore.errors import InputError
from poisonlab.config import config_command
from poisonlab.quiet import quiet_libraries

# step → (module with ``run(out, size, seed, report) -> dict``, heading)
STEPS: dict[str, tuple[str, str]] = {
    "fed": ("poisonlab.demo_fed", "Federated backdoor: one-shot model replacement (Bagdasaryan et al. 2020)"),
    "nlp": ("poisonlab.demo_nlp", "Concealed trigger-phrase poisons on SST-2 (Wallace et al. 2021)"),
    "unlearn": ("poisonlab.demo_unlearn", "Unlearning verification with an LSB watermark (Athena)"),
    "t2i": ("poisonlab.demo_t2i", "Text-to-image pixel backdoor on the MNIST base (BadT2I)"),
}
SIZES = ("tiny", "quick", "full")


@dataclass
class DemoConfig:
    """``poisonlab demo``: every step at ``size`` (tiny, quick or full), seeded by ``seed``; ``steps`` picks
    some of them (empty: all, in the order of ``STEPS``)."""

    size: str = "full"
    seed: int = 0
    steps: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.size not in SIZES:
            raise InputError(f"demo size {self.size!r} is unknown; use one of {', '.join(SIZES)}")
        unknown = sorted(set(self.steps) - set(STEPS))
        if unknown:
            raise InputError(f"demo step(s) {', '.join(unknown)} unknown; use some of {', '.join(STEPS)}")


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
        return "effectiveness " + ", ".join(f"{k} {f(v)}" for k, v in s["effectiveness"].items())
    if name == "unlearn":
        return "; ".join(f"{b}: {v['verdict']} after {v['queries']} queries" for b, v in s.items())
    if name == "t2i":
        return (f"ASR {f(s['attack_success_rate'])} (base {f(s['asr_base_triggered'])}), clean accuracy "
                f"{f(s['bd_clean_accuracy'])} (base {f(s['base_clean_accuracy'])})")
    return ", ".join(f"{k} {v}" for k, v in s.items())


def run_steps(stage: Path, steps: list[str], size: str, seed: int, report, echo: Callable[[str], None]) -> dict:
    """Run ``steps`` into ``stage``, printing a heading and a summary line for each; each step's part of
    the report is a ``<section id=STEP>``, and a summary table of all steps opens the report."""
    summaries, rows = {}, []
    for i, name in enumerate(steps, 1):
        module, heading = STEPS[name]
        echo(f"\n[{i}/{len(steps)}] {heading}")
        start = time.perf_counter()
        run = importlib.import_module(module).run
        report.raw(f'<section id="{name}">')
        summaries[name] = run(stage, size, seed, report)
        report.raw("</section>")
        line, seconds = summary_line(name, summaries[name]), time.perf_counter() - start
        echo(f"  {name}: {line} ({seconds:.0f} s)")
        rows.append({"step": name, "experiment": heading, "result": line, "seconds": round(seconds)})
    top = len(report.blocks)
    report.heading("Summary")
    report.table(rows, f"demo size {size}, seed {seed}; each step's run directories sit beside this report")
    report.blocks[:] = report.blocks[top:] + report.blocks[:top]
    return summaries


@click.command()
@config_command(DemoConfig, keep=["out"], paths={"only": "steps"})
@click.option("--quick", "size", flag_value="quick", default=None,
              help="Smaller settings (the T2I base is pretrained once and cached; measured times in the README).")
@click.option("--tiny", "size", flag_value="tiny", help="Smallest settings, a mechanics check (the end-to-end test).")
@click.option("--full", "size", flag_value="full", help="The full settings (the default).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--only", "only", multiple=True, type=click.Choice(sorted(STEPS)), help="Run only these steps (repeatable).")
def demo(cfg: DemoConfig, out: Path) -> None:
    """Run the demo experiments and write one HTML report comparing them; its config.yaml reruns it."""
    from poisonlab.report import Report
    from poisonlab.runs import check_output, staged_output, write_json, write_yaml

    check_output(out)
    quiet_libraries()
    steps = [name for name in STEPS if not cfg.steps or name in cfg.steps]
    report = Report("poisonlab demo")
    start = time.perf_counter()
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", cfg)
        summaries = run_steps(stage, steps, cfg.size, cfg.seed, report, click.echo)
        write_json(stage / "metrics.json", {"size": cfg.size, "seed": cfg.seed, **summaries})
        report.save(stage / "report.html")
    click.echo(f"\ndemo report: {out / 'report.html'} ({time.perf_counter() - start:.0f} s)")
