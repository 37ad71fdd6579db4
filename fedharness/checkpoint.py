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

import torch
from safetensors.torch import load_file, save_file


_AGG = "aggregator."


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
    """(last finished round, global vector, aggregator state), or None when no checkpoint exists."""
    state = directory / "state.json"
    if not state.exists():
        return None
    round_index = int(json.loads(state.read_text())["round"])
    tensors = load_file(str(directory / "global.safetensors"))
    return round_index, tensors["global"], {k[len(_AGG):]: v for k, v in tensors.items() if k.startswith(_AGG)}
