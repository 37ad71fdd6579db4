"""``--report-to``: the name of an accelerate experiment tracker, checked before any work starts.

accelerate silently drops a tracker whose package is missing, so a run asked to log to TensorBoard
would log nothing; this check makes that a one-line input error instead.
"""

from __future__ import annotations

from pathlib import Path

from labcore.errors import InputError


def check_report_to(name: str | None) -> None:
    """Raise InputError unless ``name`` is None or a tracker accelerate can start here."""
    if name is None:
        return
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    available = sorted(str(t) for t in get_available_trackers())
    if name not in LoggerType.list() or name == "all":
        raise InputError(f"--report-to {name!r} is not an accelerate tracker; use one of {', '.join(available) or 'tensorboard (pip install tensorboard)'}")
    if name not in available:
        raise InputError(f"--report-to {name}: its package is not installed; `pip install {name}` or use one of {', '.join(available) or 'none'}")


def tracked_accelerator(report_to: str, logs: Path, config: dict, cpu: bool = True):
    """An accelerate ``Accelerator`` whose ``report_to`` tracker logs run ``logs.name`` into the folder ``logs``,
    with the scalar entries of ``config`` as its hyperparameters."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    logs = Path(logs)
    accelerator = Accelerator(cpu=cpu, log_with=report_to,
                              project_config=ProjectConfiguration(project_dir=str(logs.parent), logging_dir=str(logs.parent)))
    accelerator.init_trackers(logs.name, config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})
    return accelerator
