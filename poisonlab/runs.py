"""Run directories: staged writing, atomic files, JSONL logs.

A run writes into ``<out>.partial`` and is renamed to ``<out>`` when it finishes; text artefacts
that name the staging folder are rewritten to name ``<out>``, so their paths stay valid. Bad input
(:class:`labcore.errors.InputError`) removes the staging folder, so no partial output is left. A
crash or Ctrl-C keeps it only for commands that can ``--resume`` from it; for the others it is
removed too, so that no stale folder blocks the next run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labcore.errors import InputError

# artefacts whose text may name the staging folder (rewritten on the final rename)
_TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".html")
_MAX_REWRITE_BYTES = 50_000_000


def staging_path(out: Path) -> Path:
    """``<out>.partial``; InputError for an ``out`` that names no folder to create (``.``, ``/``, ``..``, empty)."""
    out = Path(out)
    if out.name in ("", ".."):
        raise InputError(f"--out {str(out) or repr('')} names no new folder; give the path of a folder to create")
    return out.with_name(out.name + ".partial")


def check_output(out: Path) -> None:
    """Input errors for an ``--out`` that can't be created: it exists, or its nearest existing parent
    is a file or not writable. Call it before long work so that a typo costs no time."""
    out = Path(out)
    staging_path(out)
    if out.exists():
        raise InputError(f"output folder {out} already exists; choose another --out or remove it")
    parent = _real(out.parent)
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out} lies under {parent}, which is a file; choose a folder path")
    try:  # a real write: os.access says yes to root on read-only or virtual file systems
        os.rmdir(tempfile.mkdtemp(prefix=".poisonlab-probe-", dir=parent))
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write in {parent} ({exc.strerror}); choose a folder you can write to") from None


@contextmanager
def staged_output(out: Path, *, resume: bool | None = None) -> Iterator[Path]:
    """Yield the staging folder for ``out``; on success it becomes ``out``.

    ``resume`` is None for commands without ``--resume``: any error removes the staging folder.
    With a bool (the command's ``--resume``), a crash keeps it for ``--resume``, an existing staging
    folder needs ``resume=True``, and ``resume=True`` needs one.
    """
    out = Path(out)
    stage = staging_path(out)
    check_output(out)
    if stage.exists() and not resume:
        fix = "pass --resume to continue it or remove it" if resume is not None else "remove it and run again"
        raise InputError(f"{stage} holds an interrupted run; {fix}")
    if resume and not stage.exists():
        raise InputError(f"nothing to resume: {stage} does not exist; run without --resume")
    created = _make_dirs(stage)
    try:
        yield stage
    except BaseException as exc:
        if resume is None or isinstance(exc, InputError):
            _remove(created)
        raise
    _rewrite_paths(stage, out)
    os.replace(stage, out)


def _real(path: Path) -> Path:
    """``path`` absolute, with symlinks and ``..`` resolved as far as it exists."""
    return Path(os.path.realpath(path))


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; returns the folders created, outermost first ([] if it
    existed). Each prefix of ``path`` is resolved as the file system walks it (``new/..`` is the folder
    holding ``new``), so only folders that did not exist are listed. An OSError (read-only file system,
    a file in the way, ...) is an input error and leaves nothing behind."""
    parts = Path(path).parts
    missing = list(dict.fromkeys(p for p in (_real(Path(*parts[:i])) for i in range(1, len(parts) + 1)) if not p.exists()))
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove(missing)
        raise InputError(f"cannot create {path}: {exc.strerror}; choose another --out") from None
    return missing


def _remove(created: list[Path]) -> None:
    """Remove the folders ``_make_dirs`` created, innermost first."""
    for p in reversed(created):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _rewrite_paths(stage: Path, out: Path) -> None:
    """Replace the staging folder's path by ``out``'s in the run's text artefacts."""
    pairs = [(str(_real(stage)), str(_real(out))), (str(stage.absolute()), str(out.absolute())), (str(stage), str(out))]
    for path in stage.rglob("*"):
        if path.suffix not in _TEXT_SUFFIXES or not path.is_file() or path.stat().st_size > _MAX_REWRITE_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = text
        for old, final in pairs:
            new = new.replace(old, final)
        if new != text:
            write_text(path, new)


def read_text(path: Path, what: str = "file") -> str:
    """A user's text file as UTF-8; a missing file, a folder or bad bytes are input errors."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; pass a file")
    if not path.is_file():
        raise InputError(f"{what} {path} not found; check the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def write_text(path: Path, text: str) -> None:
    """Atomic write: a temporary sibling, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=plain) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    import yaml

    write_text(path, yaml.safe_dump(plain(obj), sort_keys=False))


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Atomic rewrite of a JSONL log with ``records``."""
    write_text(path, "".join(json.dumps(r, default=plain) + "\n" for r in records))


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=plain) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file ([] if absent); bad bytes or a bad line are input errors."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(read_text(path, "JSONL file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {number} is not JSON ({exc.msg}); fix or remove that line") from None
    return records


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
