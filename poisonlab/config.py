"""``--config`` for commands whose knobs are one dataclass (:func:`config_command`); strict YAML loading
(``from_dict``, ``load_yaml``) comes from ``labcore.config``."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import click

from labcore.config import from_dict, load_yaml
from labcore.errors import InputError

T = TypeVar("T")
__all__ = ["config_command", "from_dict", "load_config", "load_yaml"]


Paths = Mapping[str, "str | tuple[str, ...]"]


def config_command(cls: type[T] | str, *, paths: Paths | None = None, keep: Iterable[str] = (),
                   base: Mapping[str, Any] | None = None, required: Iterable[str] = ()) -> Callable:
    """Decorator: a click command whose knobs are the dataclass ``cls`` accepts ``--config FILE.yaml``.

    Defaults are written once, in ``cls``. The command's click options default to ``None`` (flags as
    ``--x/--no-x`` with ``default=None``, repeatable options give ``()``) and then mean "keep the value
    of the YAML file, else the dataclass default"; an option given on the command line overrides the
    file. Option ``name`` sets field ``name`` unless ``paths`` maps it to a dotted field path
    (``{"epochs": "train.epochs"}``; a tuple sets several). ``base`` is a scenario's mapping laid under
    the ``--config`` file (its values replace the dataclass defaults). Options named in ``keep`` (``out``, ``resume``…) are not knobs
    and pass through; options named in ``required`` must be given when no ``--config`` file is (checked
    before a lazily named ``cls`` is imported, so a forgotten option is reported at once). The merged
    mapping is loaded strictly (unknown keys and wrong types are input
    errors naming the key) and ``cfg.validate()`` runs when ``cls`` has it. The command function
    receives the config first::

        @nlp.command("train")
        @config_command(TrainCommandConfig, paths={"epochs": "train.epochs"}, keep=["out"])
        @click.option("--epochs", type=int, default=None)
        @click.option("--out", type=click.Path(path_type=Path), required=True)
        def train_cmd(cfg: TrainCommandConfig, out: Path) -> None:
            write_yaml(stage / "config.yaml", cfg)  # reloads with --config run_dir/config.yaml

    Place it between ``@group.command`` and the options, so ``--help`` shows each option's default as
    the dataclass (or ``base``) has it; directly above the ``def`` works too, without them. A run directory's ``config.yaml`` written as ``plain(cfg)``
    reloads through ``--config`` into the same dataclass, so ``poisonlab X --config run/config.yaml``
    reruns the run (same seed, same metrics). ``cls`` may be ``"module:Class"``, imported when the command
    runs (a dataclass whose module imports torch must not slow ``poisonlab --help``).
    """
    paths = dict(paths or {})
    kept, needed = tuple(keep), tuple(required)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(config_file: Path | None = None, **options: Any) -> Any:
            passthrough = {name: options.pop(name) for name in kept if name in options}
            for name in needed if config_file is None else ():
                if options.get(name) is None:
                    raise required_error(name, name)
            return command(load_config(_resolve(cls), config_file, options, paths, base), **passthrough)

        name = cls if isinstance(cls, str) else cls.__name__
        for param in getattr(command, "__click_params__", []):
            if param.name not in kept and isinstance(param, click.Option):
                _show_default(param, None if isinstance(cls, str) else cls, base or {}, paths.get(param.name, param.name))
        return click.option(
            "--config", "config_file", type=click.Path(path_type=Path), default=None,
            help=f"YAML file of {name.rpartition(':')[2]} keys (e.g. a run's config.yaml); options given here override it.",
        )(wrapper)

    return decorate


def load_config(cls: type[T], path: Path | None, options: Mapping[str, Any], paths: Paths | None = None,
                base: Mapping[str, Any] | None = None) -> T:
    """``cls`` from ``base`` overlaid with the YAML at ``path`` (if any), overlaid with the options that were
    given (not None / empty)."""
    paths = paths or {}
    loaded = load_yaml(path) if path is not None else {}
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a mapping of keys to values at the top level")
    merged = _merge(copy.deepcopy(dict(base or {})), loaded)
    for name, value in options.items():
        if value is None or value == ():
            continue
        targets = paths.get(name, name)
        for dotted in (targets,) if isinstance(targets, str) else targets:
            _set_path(merged, dotted, _yaml_value(value))
    flags = {dotted: name for name, dotted in paths.items() if isinstance(dotted, str)}
    for f in dataclasses.fields(cls):
        if f.name not in merged and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise required_error(f.name, flags.get(f.name, f.name))
    cfg = from_dict(cls, merged, source=str(path) if path is not None else "options")
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def required_error(field: str, option: str) -> InputError:
    """The one-line error for a required ``field`` given neither as ``--option`` nor in the --config file."""
    return InputError(f"{field} is required: pass --{option.replace('_', '-')} or set '{field}:' in the --config file")


def _show_default(option: click.Option, cls: type | None, base: Mapping[str, Any], dotted: "str | tuple[str, ...]") -> None:
    """Append ``[default: …]`` to ``option``'s help: the value ``base`` or the dataclass ``cls`` gives the field
    (not to one of several flags that each set the field to their own value, such as ``--quick``/``--full``)."""
    if option.is_flag and not option.is_bool_flag:
        return
    missing = object()
    value: Any = missing
    for key in (dotted if isinstance(dotted, str) else dotted[0]).split("."):
        base = base.get(key, {}) if isinstance(base, Mapping) else {}
    if not isinstance(base, Mapping) or base:
        value = base
    elif cls is not None:
        value = _field_default(cls, dotted if isinstance(dotted, str) else dotted[0], missing)
    if value is not missing and value not in (None, [], ()):
        option.help = f"{option.help or ''} [default: {value}]".strip()


def _field_default(cls: type, dotted: str, missing: Any) -> Any:
    """The default of the (nested) dataclass field ``dotted`` of ``cls``, or ``missing``."""
    value: Any = cls
    for key in dotted.split("."):
        if not dataclasses.is_dataclass(value):
            return missing
        if not isinstance(value, type):
            value = getattr(value, key, missing)
            continue
        f = {f.name: f for f in dataclasses.fields(value)}.get(key)
        if f is None or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            return missing
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return value


def _yaml_value(value: Any) -> Any:
    """An option's value as YAML would give it: tuples as lists, paths as strings."""
    if isinstance(value, (tuple, list)):
        return [_yaml_value(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _resolve(cls: type | str) -> type:
    """A class, or ``"module:Class"`` imported now."""
    if not isinstance(cls, str):
        return cls
    module, _, name = cls.partition(":")
    return getattr(importlib.import_module(module), name)


def _merge(into: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``into``: nested mappings merge key by key, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating the intermediate mappings."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise InputError(f"config key {key!r} must be a mapping (it holds {dotted})")
    data[leaf] = value
