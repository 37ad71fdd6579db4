"""Per-round checkpoints: the global vector and any aggregator state (safetensors), and the last
finished round (JSON).

Each round's randomness derives from (seed, round), so the global vector, the aggregator's state
(e.g. FoolsGold's histories) and the round index are all a resumed run needs to continue exactly as
an uninterrupted one. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from labcore.errors import InputError, first_line


_AGG = "aggregator."
T = TypeVar("T")


def save(
    directory: Path, round_index: int, global_vec: torch.Tensor, aggregator_state: dict[str, torch.Tensor] | None = None
) -> None:
    """Write ``global.safetensors`` then ``state.json`` (the commit point)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "global.safetensors.tmp"
    tensors = {"global": global_vec, **{_AGG + k: v for k, v in (aggregator_state or {}).items()}}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, directory / "global.safetensors")
    tmp_state = directory / "state.json.tmp"
    tmp_state.write_text(json.dumps({"round": round_index}))
    os.replace(tmp_state, directory / "state.json")


def load(directory: Path) -> tuple[int, torch.Tensor, dict[str, torch.Tensor]] | None:
    """(last finished round, global vector, aggregator state), or None when no checkpoint exists.

    A file that is not one :func:`save` wrote (damaged, edited) is an InputError naming it and the fix."""
    state = directory / "state.json"
    if not state.exists():
        return None
    round_index = _parse(state, _read_round)
    tensors = _parse(directory / "global.safetensors", _read_tensors)
    return round_index, tensors["global"], {k[len(_AGG):]: v for k, v in tensors.items() if k.startswith(_AGG)}


def _read_round(path: Path) -> int:
    """The finished round ``state.json`` records (an integer >= 1)."""
    round_index = json.loads(path.read_text(encoding="utf-8"))["round"]
    if type(round_index) is not int or round_index < 1:
        raise ValueError(f"round {round_index!r} is not a finished round")
    return round_index


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``global.safetensors``, which holds the global vector."""
    tensors = load_file(str(path))
    if "global" not in tensors:
        raise ValueError("no 'global' tensor")
    return tensors


def _parse(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``; any failure is an InputError naming ``path`` and the fix (start the run over)."""
    try:
        return read(path)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, SafetensorError) as exc:
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        run = path.parent.parent
        raise InputError(f"checkpoint file {path} is damaged ({reason}); delete {run} and run again without --resume") from None
