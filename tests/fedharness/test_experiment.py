"""fedharness.experiment: tasks found through the ``fedharness.tasks`` entry points; the shared round loop."""

from __future__ import annotations

import sys

import pytest

from fedharness.config import ExperimentConfig, TaskConfig
from fedharness.experiment import build_task, task_builders
from labcore.errors import InputError


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed-looking distribution on sys.path declaring the registry ``plugin_tasks:TASKS``."""
    (tmp_path / "plugin_tasks.py").write_text("TASKS = {'echo': lambda cfg: ('echo task', cfg.task.params['x'])}\n")
    info = tmp_path / "plugin_tasks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-tasks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedharness.tasks]\nplugin = plugin_tasks:TASKS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("plugin_tasks", None)


def test_a_declared_registry_builds_its_tasks(plugin):
    assert "echo" in task_builders()
    assert build_task(ExperimentConfig(task=TaskConfig(name="echo", params={"x": 3}))) == ("echo task", 3)


def test_an_unknown_task_names_the_known_ones(plugin):
    with pytest.raises(InputError, match="task.name 'nope' is unknown; use one of .*echo"):
        build_task(ExperimentConfig(task=TaskConfig(name="nope")))


def test_an_explicit_registry_overrides_the_declared_ones():
    assert build_task(ExperimentConfig(task=TaskConfig(name="mine")), {"mine": lambda cfg: cfg.seed}) == 0


def test_no_registered_task_says_to_install_the_project():
    with pytest.raises(InputError, match=r"no federated task is registered .*pip install -e \."):
        build_task(ExperimentConfig(), {})
