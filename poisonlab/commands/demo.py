"""``poisonlab demo``: every module's quick experiment on the default small models and data."""

from __future__ import annotations

from pathlib import Path

import click

from poisonlab import demo_fed
from poisonlab.report import Report
from poisonlab.runs import staged_output, write_json

STEPS = {"fed": demo_fed.run}


@click.command()
@click.option("--quick", is_flag=True, help="Smaller settings (under 3 minutes per step on 2 CPU cores).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(quick: bool, out: Path, seed: int) -> None:
    """Run the demo experiments and write one HTML report comparing them."""
    report = Report("poisonlab demo")
    with staged_output(out) as stage:
        summaries = {name: step(stage, quick, seed, report) for name, step in STEPS.items()}
        write_json(stage / "metrics.json", summaries)
        report.save(stage / "report.html")
    click.echo(f"demo report: {out / 'report.html'}")
