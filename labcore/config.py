"""YAML mapped onto dataclasses, strictly: unknown keys, wrong types and missing keys name the key.

Every layer may import it (labcore depends on no other package of the lab).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import dacite
import yaml

from labcore.errors import InputError

T = TypeVar("T")
MAX_SEED = 2**32 - 1
"""The largest seed every generator the lab seeds accepts: numpy's ``default_rng`` takes no negative seed, and its
legacy ``np.random.seed`` (called by ``accelerate``'s ``set_seed``) none above 32 bits."""


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping; raises InputError naming the offending key."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of keys to values at the top level")
    try:
        built = dacite.from_dict(cls, data, config=dacite.Config(strict=True, cast=[tuple]))
    except dacite.UnexpectedDataError as exc:
        keys = ", ".join(sorted(exc.keys))
        raise InputError(f"{source}: unknown key(s) {keys}; check the spelling against the documented keys") from None
    except dacite.WrongTypeError as exc:
        value = _given(data, exc.field_path, exc.value)
        raise InputError(
            f"{source}: key {exc.field_path!r} has the wrong type: expected {_type_name(exc.field_type)}, "
            f"got {type(value).__name__} {value!r}"
        ) from None
    except dacite.MissingValueError as exc:
        raise InputError(f"{source}: key {exc.field_path!r} is required") from None
    except dacite.DaciteError as exc:
        raise InputError(f"{source}: {exc}") from None
    check_seeds(built, source)
    return built


def check_seeds(cfg: Any, source: str = "config", prefix: str = "") -> None:
    """Every ``seed`` field, and every element of a ``seeds`` list, of the dataclass ``cfg`` and of the dataclasses
    it holds is an integer in 0..:data:`MAX_SEED`; InputError naming the key otherwise."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_seeds(value, source, f"{key}.")
        elif f.name == "seed" and isinstance(value, int) or f.name == "seeds" and isinstance(value, (list, tuple)):
            for seed in [value] if f.name == "seed" else value:
                if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
                    raise InputError(f"{source}: {key} {seed} is out of range; pass a seed from 0 to {MAX_SEED}")


def _given(data: dict[str, Any], field_path: str, fallback: Any) -> Any:
    """The value the mapping gave at the dotted ``field_path`` (dacite reports a half-built one for
    collections, e.g. a generator for a string given where a list belongs)."""
    value: Any = data
    for key in field_path.split("."):
        if not isinstance(value, dict) or key not in value:
            return fallback
        value = value[key]
    return value


def changed_fields(section: Any) -> list[str]:
    """The fields of the dataclass instance ``section`` whose values differ from its class's defaults (a
    value set equal to its default cannot be told from one left unset)."""
    default = type(section)()
    return [f.name for f in dataclasses.fields(section) if getattr(section, f.name) != getattr(default, f.name)]


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; missing files and syntax errors are input errors."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"config path {path} is a folder; pass the path of a YAML file")
    if not path.is_file():
        raise InputError(f"config file {path} not found; pass the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
    if data is None:
        raise InputError(f"config file {path} is empty; write the experiment's keys into it")
    return data


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")
