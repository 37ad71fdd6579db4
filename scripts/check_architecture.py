"""Check the package imports against the layering drawn in the README's Architecture section.

    labcore  ←  fedharness  ←  research modules  ←  poisonlab

Every import statement of every package (lazy ones inside functions included) is read with ``ast``.
A package may import itself and the layers below it: labcore nothing of the lab, fedharness only
labcore, a research module labcore and fedharness, poisonlab anything. A research module imports no
other research module except along an edge listed in ``ALLOWED`` (drawn in the README), never
poisonlab. Every top-level package of the repository that is not named here counts as a research
module, so a new one is checked from its first commit. ``scripts/`` and ``tests/`` sit above all.

Usage: ``python scripts/check_architecture.py [REPO]``; exit 1 with one line per offending import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = {"labcore": 0, "fedharness": 1, "poisonlab": 3}
RESEARCH = 2
ALLOWED = {
    ("unlearning_verify", "t2i_poison"): "the T2I watermark reuses BadT2I's pixel patch, trigger check and patch MSE",
}


def packages(repo: Path) -> list[str]:
    """Top-level packages of the repository (folders with an ``__init__.py``)."""
    return sorted(p.parent.name for p in repo.glob("*/__init__.py") if p.parent.name not in ("tests", "scripts"))


def imported_packages(tree: ast.AST, own: str) -> list[tuple[int, str, str]]:
    """(line, top-level package, dotted module) of every absolute import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0], a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0], node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, own, "." * node.level + (node.module or "")))
    return found


def allowed(source: str, target: str) -> bool:
    if source == target:
        return True
    src, dst = LAYERS.get(source, RESEARCH), LAYERS.get(target, RESEARCH)
    if src == RESEARCH and dst == RESEARCH:
        return (source, target) in ALLOWED
    return dst < src


def violations(repo: Path) -> list[str]:
    """One line per import that breaks the layering: ``file:line: a imports b``."""
    lab = set(packages(repo))
    out = []
    for package in sorted(lab):
        for path in sorted((repo / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, target, module in imported_packages(tree, package):
                if target in lab and not allowed(package, target):
                    out.append(f"{path.relative_to(repo)}:{line}: {package} imports {module} (layer rule: {rule(package, target)})")
    return out


def rule(source: str, target: str) -> str:
    if target == "poisonlab":
        return "nothing below poisonlab imports it"
    if LAYERS.get(source, RESEARCH) == RESEARCH and LAYERS.get(target, RESEARCH) == RESEARCH:
        return "research modules import each other only along ALLOWED edges drawn in the README"
    return f"{source} may import only layers below it"


def main(argv: list[str]) -> int:
    repo = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    bad = violations(repo)
    for line in bad:
        print(line)
    if not bad:
        print(f"architecture ok: {', '.join(packages(repo))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
