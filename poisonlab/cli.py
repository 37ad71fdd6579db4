"""The ``poisonlab`` command line. Bad input exits with code 2 and a one-line message."""

from __future__ import annotations

import sys

import click

from labcore.errors import InputError
from poisonlab.commands.demo import demo
from poisonlab.commands.fed import fed
from poisonlab.commands.nlp import nlp
from poisonlab.commands.unlearn import unlearn
from poisonlab.commands.t2i import t2i


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="poisonlab")
def cli() -> None:
    """poisonlab: data and model poisoning experiments across modalities."""


cli.add_command(fed)
cli.add_command(nlp)
cli.add_command(demo)
cli.add_command(unlearn)
cli.add_command(t2i)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
