"""Per-round checkpoints: the global vector (safetensors) and the last finished round (JSON).

Each round's randomness derives from (seed, round), so the global vector and the round index are
all a resumed run needs to continue exactly as an uninterrupted one. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save(directory: Path, round_index: int, global_vec: torch.Tensor) -> None:
    """Write ``global.safetensors`` then ``state.json`` (the commit point)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "global.safetensors.tmp"
    save_file({"global": global_vec.contiguous()}, str(tmp))
    os.replace(tmp, directory / "global.safetensors")
    tmp_state = directory / "state.json.tmp"
    tmp_state.write_text(json.dumps({"round": round_index}))
    os.replace(tmp_state, directory / "state.json")


def load(directory: Path) -> tuple[int, torch.Tensor] | None:
    """(last finished round, global vector), or None when no checkpoint exists."""
    state = directory / "state.json"
    if not state.exists():
        return None
    round_index = int(json.loads(state.read_text())["round"])
    return round_index, load_file(str(directory / "global.safetensors"))["global"]
