"""scripts/check_architecture.py: the repository follows the README's layering, and a breach is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_architecture.py"


def _check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True)


def test_the_repository_follows_the_layering():
    result = _check(REPO)
    assert result.returncode == 0, result.stdout
    assert "fedharness" in result.stdout and "poisonlab" in result.stdout


def _package(root: Path, name: str, source: str = "") -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "core.py").write_text(source)


def test_a_breach_is_reported_with_file_line_and_exit_1(tmp_path):
    _package(tmp_path, "labcore")
    _package(tmp_path, "fedharness", "from labcore import errors\n")
    _package(tmp_path, "poisonlab", "import fedharness\nimport newmod\n")
    _package(tmp_path, "newmod", "import fedharness\n\ndef f():\n    from poisonlab import cli\n")
    _package(tmp_path, "othermod", "from newmod.core import f\n")
    assert _check(tmp_path).returncode == 1
    lines = _check(tmp_path).stdout.splitlines()
    assert lines == [
        "newmod/core.py:4: newmod imports poisonlab (layer rule: nothing below poisonlab imports it)",
        "othermod/core.py:1: othermod imports newmod.core (layer rule: research modules import each other only along "
        "ALLOWED edges drawn in the README)",
    ]
    (tmp_path / "othermod" / "core.py").write_text("")
    (tmp_path / "newmod" / "core.py").write_text("")
    (tmp_path / "fedharness" / "core.py").write_text("import newmod\n")
    assert _check(tmp_path).stdout.startswith("fedharness/core.py:1: fedharness imports newmod")
