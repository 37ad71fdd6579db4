"""Run directories: staged writing, atomic files, JSONL logs.

A run writes into ``<out>.partial`` and is renamed to ``<out>`` when it finishes. Bad input
(:class:`fedharness.InputError`) removes the staging folder, so no partial output is left; a crash or
Ctrl-C keeps it so that ``--resume`` can continue from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from labcore.errors import InputError


def staging_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@contextmanager
def staged_output(out: Path, *, resume: bool = False) -> Iterator[Path]:
    """Yield the staging folder for ``out``; on success it becomes ``out``.

    Without ``resume`` an existing ``out`` or staging folder is an input error; with it, the staging
    folder of an interrupted run is reused.
    """
    out = Path(out)
    stage = staging_path(out)
    if out.exists():
        raise InputError(f"output folder {out} already exists; choose another --out or remove it")
    if stage.exists() and not resume:
        raise InputError(f"{stage} holds an interrupted run; pass --resume to continue it or remove it")
    if resume and not stage.exists():
        raise InputError(f"nothing to resume: {stage} does not exist; run without --resume")
    created = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except InputError:
        if created:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    os.replace(stage, out)


def write_text(path: Path, text: str) -> None:
    """Atomic write: a temporary sibling, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=plain) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_text(path, yaml.safe_dump(plain(obj), sort_keys=False))


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Atomic rewrite of a JSONL log with ``records``."""
    write_text(path, "".join(json.dumps(r, default=plain) + "\n" for r in records))


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=plain) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plain(obj: Any) -> Any:
    """Dataclasses, paths and numpy/torch scalars as plain YAML/JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj
