"""The ``poisonlab`` command line. Bad input exits with code 2 and a one-line message.

Command groups are imported only when invoked (``poisonlab --help`` lists them from the help texts
below without importing torch), and every float option of every command rejects NaN and ±inf.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import Any

import click

from labcore.errors import InputError, first_line

# The libraries' loading and download bars would bury the one-line errors and the commands' own
# progress bars; a user may set these to 0 to see them again.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

# name → (module, attribute, one-line help shown by ``poisonlab --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("poisonlab.commands.demo", "demo", "Run the demo experiments and write one HTML report comparing them."),
    "fed": ("poisonlab.commands.fed", "fed", "Federated training with attacks and defenses."),
    "nlp": ("poisonlab.commands.nlp", "nlp", "Concealed data poisoning of sentiment models (trigger phrase → target label)."),
    "t2i": ("poisonlab.commands.t2i", "t2i", "Text-to-image backdoors (BadT2I: pixel, object, style) with LoRA."),
    "unlearn": ("poisonlab.commands.unlearn", "unlearn", "Backdoor watermarks that verify whether an unlearning request was honoured."),
}

# OSErrors about a path the user named (the message names the path); other OSErrors stay tracebacks.
_USER_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
# Library errors that only arise from reading a broken user file (matched by class, the library is not imported).
_BROKEN_FILE_ERRORS = {
    "SafetensorError": "a weights file is truncated or not safetensors",
    "UnidentifiedImageError": "a file given as an image is not an image",
}


class FiniteFloat(click.ParamType):
    """click's FLOAT without NaN and ±inf (``--lr nan`` is a usage error, not a NaN run)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; pass a real value such as 0.1", param, ctx)
        return number


FINITE_FLOAT = FiniteFloat()


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that rejects NaN first (NaN compares false with both bounds, so it would pass)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        return super().convert(FINITE_FLOAT.convert(value, param, ctx), param, ctx)


def finite_floats(command: click.Command) -> click.Command:
    """Give every float option of ``command`` and its subcommands the finite-float type."""
    for param in command.params:
        kind = param.type
        if isinstance(kind, click.FloatRange) and not isinstance(kind, FiniteFloatRange):
            param.type = FiniteFloatRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
        elif isinstance(kind, click.types.FloatParamType) and not isinstance(kind, click.FloatRange):
            param.type = FINITE_FLOAT
    for sub in getattr(command, "commands", {}).values():
        finite_floats(sub)
    return command


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return finite_floats(getattr(importlib.import_module(module), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Run with poisonlab's exit codes: 2 and one line for bad input, 130 for Ctrl-C."""
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "poisonlab"
            fail(f"{exc.format_message()} (see '{where} --help')")
        except click.ClickException as exc:
            fail(exc.format_message())
        except InputError as exc:
            fail(str(exc))
        except UnicodeDecodeError as exc:
            fail(f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
        except _USER_PATH_ERRORS as exc:
            if exc.filename is None:
                raise
            fail(f"{exc.strerror}: {exc.filename}; check the path")
        except Exception as exc:
            what = _BROKEN_FILE_ERRORS.get(type(exc).__name__)
            if what is None:
                raise
            fail(f"{what} ({first_line(exc)}); pass a complete, valid file")


def fail(message: str) -> None:
    """Print ``error: message`` on one line and exit with code 2."""
    click.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="poisonlab")
def cli() -> None:
    """poisonlab: data and model poisoning experiments across modalities."""


def main() -> None:
    cli.main(prog_name="poisonlab")
