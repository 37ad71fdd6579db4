"""YAML configs mapped onto dataclasses, strictly: unknown keys and wrong types name the key; ``--config``
for commands whose knobs are one dataclass (:func:`config_command`)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import click
import dacite
import yaml

from labcore.errors import InputError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping; raises InputError naming the offending key."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of keys to values at the top level")
    try:
        return dacite.from_dict(cls, data, config=dacite.Config(strict=True, cast=[tuple]))
    except dacite.UnexpectedDataError as exc:
        keys = ", ".join(sorted(exc.keys))
        raise InputError(f"{source}: unknown key(s) {keys}; check the spelling against the documented keys") from None
    except dacite.WrongTypeError as exc:
        raise InputError(
            f"{source}: key {exc.field_path!r} has the wrong type: expected {_type_name(exc.field_type)}, "
            f"got {type(exc.value).__name__} {exc.value!r}"
        ) from None
    except dacite.MissingValueError as exc:
        raise InputError(f"{source}: key {exc.field_path!r} is required") from None
    except dacite.DaciteError as exc:
        raise InputError(f"{source}: {exc}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; missing files and syntax errors are input errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} not found; pass the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
    return data if data is not None else {}


def config_command(cls: type[T], *, paths: Mapping[str, str] | None = None, keep: Iterable[str] = ()) -> Callable:
    """Decorator: a click command whose knobs are the dataclass ``cls`` accepts ``--config FILE.yaml``.

    Defaults are written once, in ``cls``. The command's click options default to ``None`` (flags as
    ``--x/--no-x`` with ``default=None``, repeatable options give ``()``) and then mean "keep the value
    of the YAML file, else the dataclass default"; an option given on the command line overrides the
    file. Option ``name`` sets field ``name`` unless ``paths`` maps it to a dotted field path
    (``{"epochs": "train.epochs"}``). Options named in ``keep`` (``out``, ``resume``…) are not knobs
    and pass through. The merged mapping is loaded strictly (unknown keys and wrong types are input
    errors naming the key) and ``cfg.validate()`` runs when ``cls`` has it. The command function
    receives the config first::

        @nlp.command("train")
        @click.option("--epochs", type=int, default=None)
        @click.option("--out", type=click.Path(path_type=Path), required=True)
        @config_command(TrainCommandConfig, paths={"epochs": "train.epochs"}, keep=["out"])
        def train_cmd(cfg: TrainCommandConfig, out: Path) -> None:
            write_yaml(stage / "config.yaml", cfg)  # reloads with --config run_dir/config.yaml

    Place it directly above the ``def``. A run directory's ``config.yaml`` written as ``plain(cfg)``
    reloads through ``--config`` into the same dataclass, so ``poisonlab X --config run/config.yaml``
    reruns the run (same seed, same metrics).
    """
    paths = dict(paths or {})
    kept = tuple(keep)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(config_file: Path | None = None, **options: Any) -> Any:
            passthrough = {name: options.pop(name) for name in kept if name in options}
            return command(load_config(cls, config_file, options, paths), **passthrough)

        return click.option(
            "--config", "config_file", type=click.Path(path_type=Path), default=None,
            help=f"YAML file of {cls.__name__} keys (e.g. a run's config.yaml); options given here override it.",
        )(wrapper)

    return decorate


def load_config(cls: type[T], path: Path | None, options: Mapping[str, Any], paths: Mapping[str, str] | None = None) -> T:
    """``cls`` from the YAML at ``path`` (if any) overlaid with the options that were given (not None / empty)."""
    paths = paths or {}
    merged = load_yaml(path) if path is not None else {}
    if not isinstance(merged, dict):
        raise InputError(f"{path}: expected a mapping of keys to values at the top level")
    for name, value in options.items():
        if value is None or value == ():
            continue
        _set_path(merged, paths.get(name, name), list(value) if isinstance(value, tuple) else value)
    flags = {dotted: name for name, dotted in paths.items()}
    for f in dataclasses.fields(cls):
        if f.name not in merged and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            flag = "--" + flags.get(f.name, f.name).replace("_", "-")
            raise InputError(f"{f.name} is required: pass {flag} or set '{f.name}:' in the --config file")
    cfg = from_dict(cls, merged, source=str(path) if path is not None else "options")
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating the intermediate mappings."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise InputError(f"config key {key!r} must be a mapping (it holds {dotted})")
    data[leaf] = value

def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")
