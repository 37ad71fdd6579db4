"""One folder for everything the lab fetches or trains once and reuses (the MovieLens wheel, the demo's
T2I base and NLP surrogate)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$POISONLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/poisonlab``, else ``~/.cache/poisonlab``."""
    if os.environ.get("POISONLAB_CACHE_DIR"):
        return Path(os.environ["POISONLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "poisonlab"
