"""``poisonlab demo``: every module's quick experiment on the default small models and data.

Maps the flags onto :class:`poisonlab.demo.DemoConfig` and calls :func:`poisonlab.demo.run_demo`: each
step in its own process (``--lanes`` at once), a heading when it starts and one summary line when it
ends; the steps' own output goes to ``logs/STEP.log``.
"""

from __future__ import annotations

from pathlib import Path

import click

from poisonlab.config import config_command
from poisonlab.demo import STEPS, DemoConfig


@click.command()
@config_command(DemoConfig, keep=["out"], paths={"only": "steps"})
@click.option("--quick", "size", flag_value="quick", default=None,
              help="Smaller settings (the T2I base and the NLP surrogate are trained once and cached; times in the README).")
@click.option("--tiny", "size", flag_value="tiny", help="Smallest settings, a mechanics check (the end-to-end test).")
@click.option("--full", "size", flag_value="full", help="The full settings (the default).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--only", "only", multiple=True, type=click.Choice(sorted(STEPS)), help="Run only these steps (repeatable).")
@click.option("--lanes", type=int, default=None, help="Steps run at once, one process each (default 2; 1: one after another).")
def demo(cfg: DemoConfig, out: Path) -> None:
    """Run the demo experiments and write one HTML report comparing them; its config.yaml reruns it."""
    from poisonlab.demo import run_demo
    from poisonlab.runs import check_output

    check_output(out)
    run_demo(cfg, out, click.echo)
