"""Staged run directories: what is left after success, bad input and crashes, and the path rewrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labcore.errors import InputError
from poisonlab.runs import check_output, read_jsonl, read_text, staged_output, staging_path


def test_success_renames_and_rewrites_paths_that_name_the_stage(tmp_path):
    out = tmp_path / "run"
    with staged_output(out) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "config.json").write_text(json.dumps({"base": str(stage / "base"), "rel": "x"}))
        (stage / "weights.bin").write_bytes(str(stage).encode() + b"\xff")
    assert not staging_path(out).exists()
    assert json.loads((out / "sub" / "config.json").read_text())["base"] == str(out / "base")
    assert (out / "weights.bin").read_bytes() == str(staging_path(out)).encode() + b"\xff", "binary files are not touched"


@pytest.mark.parametrize("resume", [None, False])
def test_bad_input_leaves_no_stage(tmp_path, resume):
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(InputError):
        with staged_output(out, resume=resume):
            raise InputError("bad")
    assert not (tmp_path / "a").exists(), "parents created for the run are removed too"


def test_a_crash_removes_the_stage_of_a_command_without_resume_and_keeps_a_resumable_one(tmp_path):
    for resume, kept in ((None, False), (False, True)):
        out = tmp_path / f"run-{resume}"
        with pytest.raises(RuntimeError):
            with staged_output(out, resume=resume):
                raise RuntimeError("crash")
        assert staging_path(out).exists() == kept


def test_a_stale_stage_names_the_fix_the_command_has(tmp_path):
    out = tmp_path / "run"
    staging_path(out).mkdir()
    with pytest.raises(InputError, match="remove it and run again"):
        with staged_output(out):
            pass
    with pytest.raises(InputError, match="pass --resume"):
        with staged_output(out, resume=False):
            pass


@pytest.mark.parametrize("where", ["under-file", "proc"])
def test_output_that_cannot_be_created_is_an_input_error(tmp_path, where):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run" if where == "under-file" else Path("/proc/poisonlab/run")
    with pytest.raises(InputError, match="--out"):
        check_output(out)


def test_readers_turn_bad_bytes_and_bad_lines_into_input_errors(tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes('{"a": "café"}\n'.encode("latin-1"))
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InputError, match="not UTF-8"):
        read_jsonl(tmp_path / "latin1.jsonl")
    with pytest.raises(InputError, match="line 2"):
        read_jsonl(tmp_path / "broken.jsonl")
    with pytest.raises(InputError, match="is a folder"):
        read_text(tmp_path)


def test_a_dotdot_in_out_never_removes_folders_that_existed(tmp_path, monkeypatch):
    from poisonlab.runs import _make_dirs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "keep.txt").write_text("keep")
    with pytest.raises(InputError, match="afile"):
        check_output(Path("new/../afile/x"))
    with pytest.raises(InputError, match="cannot create"):
        _make_dirs(Path("new/../afile/x.partial"))  # the folder holding "new" is the working folder: it stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "keep.txt"]
    for nameless in ("new/..", ".", "", "/"):
        with pytest.raises(InputError, match="names no new folder"):
            staged_output(Path(nameless)).__enter__()
    with staged_output(Path("new/../ok/run")) as stage:
        (stage / "metrics.json").write_text("{}")
    assert (tmp_path / "ok" / "run" / "metrics.json").is_file() and (tmp_path / "keep.txt").is_file()
