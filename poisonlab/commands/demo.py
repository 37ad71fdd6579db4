"""``poisonlab demo``: every module's quick experiment on the default small models and data."""

from __future__ import annotations

from pathlib import Path

import click

from poisonlab import demo_fed
from poisonlab import demo_nlp
from poisonlab import demo_unlearn
from poisonlab import demo_t2i
from poisonlab.report import Report
from poisonlab.runs import staged_output, write_json

STEPS = {"fed": demo_fed.run, "nlp": demo_nlp.run, "unlearn": demo_unlearn.run, "t2i": demo_t2i.run}


@click.command()
@click.option("--quick", is_flag=True, help="Smaller settings (each step a few minutes at most on 2 CPU cores).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--only", "only", multiple=True, type=click.Choice(sorted(STEPS)), help="Run only these steps (repeatable).")
def demo(quick: bool, out: Path, seed: int, only: tuple[str, ...]) -> None:
    """Run the demo experiments and write one HTML report comparing them."""
    report = Report("poisonlab demo")
    steps = {name: step for name, step in STEPS.items() if not only or name in only}
    with staged_output(out) as stage:
        summaries = {name: step(stage, quick, seed, report) for name, step in steps.items()}
        write_json(stage / "metrics.json", summaries)
        report.save(stage / "report.html")
    click.echo(f"demo report: {out / 'report.html'}")
