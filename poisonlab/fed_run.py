"""A federated experiment as a run directory: config.yaml, rounds.jsonl, checkpoints/, metrics.json,
report.html. ``resume`` continues an interrupted run from its last checkpoint. The rounds run in
``fedharness.experiment.run_rounds``; ``TASKS`` is poisonlab's task registry (declared to fedharness as
the ``fedharness.tasks`` entry point, so the Flower App finds it too)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import yaml

from fedharness import experiment
from fedharness.attacks.pixel_backdoor import PixelPattern
from fedharness.config import ExperimentConfig
from labcore.config import changed_fields
from labcore.errors import InputError
from fedharness.simulation import Simulation, build_methods
from fedharness.tasks import Task
from fedharness.tasks.head_finetune import head_finetune_task
from fedharness.tasks.image_classification import ImageClassificationTask
from poisonlab import data, unlearn_data
from poisonlab.fed_report import summarize, write_report
from poisonlab.config import from_dict, load_yaml
from poisonlab.fedrec_task import build_recommendation_task
from poisonlab.runs import plain, staged_output, write_json, write_yaml

IMAGE_DATASETS = ("mnist", "digits")


def build_image_task(cfg: ExperimentConfig) -> ImageClassificationTask:
    """The image-classification task for ``cfg.data`` (validated before any output is written)."""
    if cfg.data.name not in IMAGE_DATASETS:
        raise InputError(f"data.name {cfg.data.name!r} is not an image dataset; use one of {', '.join(IMAGE_DATASETS)}")
    ds = data.load(cfg.data.name, cfg.data.path)
    x_train, y_train = data.image_tensors(ds["train"])
    x_test, y_test = data.image_tensors(ds["test"])
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    _check_classes(cfg, num_classes)
    height, width = x_train.shape[-2:]
    if cfg.task.trigger_size > min(height, width):
        raise InputError(f"task.trigger_size {cfg.task.trigger_size} does not fit the {height}×{width} images of "
                         f"{cfg.data.name}; pick one of 1..{min(height, width)}")
    return ImageClassificationTask(
        x_train, y_train, x_test, y_test,
        target_label=cfg.task.target_label,
        trigger=PixelPattern(size=cfg.task.trigger_size),
        poison_fraction=cfg.task.poison_fraction,
        num_classes=num_classes,
    )


def _check_classes(cfg: ExperimentConfig, num_classes: int) -> None:
    """The backdoor's target (and the semantic backdoor's source) are classes of ``cfg.data``."""
    keys = ["target_label"] + (["semantic_source"] if cfg.task.backdoor == "semantic" else [])
    for key in keys:
        label = getattr(cfg.task, key)
        if label >= num_classes:
            raise InputError(f"task.{key} {label} is not a class of {cfg.data.name}; pick one of 0..{num_classes - 1}")


def build_sst2_task(cfg: ExperimentConfig) -> Task:
    """Federated LoRA sentiment classification; ``task.params`` are ``nlp_poison.config.SST2TaskConfig``."""
    from nlp_poison.config import SST2TaskConfig
    from nlp_poison.task import sst2_task

    params = from_dict(SST2TaskConfig, cfg.task.params, source="task.params")
    return sst2_task(data.load_sentiment(params.data_path), params, cfg.seed)


def build_t2i_task(cfg: ExperimentConfig) -> Task:
    """Federated BadT2I LoRA on the lab's digit base; ``task.params`` are ``t2i_poison.task.T2ITaskConfig``."""
    from t2i_poison.task import T2ITaskConfig, require_folders, t2i_task

    if cfg.data.name not in IMAGE_DATASETS:
        raise InputError(f"data.name {cfg.data.name!r} is not a digit dataset; t2i_lora needs one of {', '.join(IMAGE_DATASETS)}")
    params = from_dict(T2ITaskConfig, cfg.task.params, source="task.params")
    require_folders(params)
    train = data.load(cfg.data.name, cfg.data.path)["train"]
    x_train, y_train = data.image_tensors(train.select(range(min(params.train_limit or len(train), len(train)))))
    return t2i_task(x_train, y_train, params, cfg.seed)


def build_head_finetune_task(cfg: ExperimentConfig) -> Task:
    """Clients fine-tune the head of a frozen extractor pretrained on the other classes (hidden-trigger setting)."""
    return head_finetune_task(build_image_task(cfg), cfg.task.params, cfg.seed)


PIXEL_KEYS = ("target_label", "trigger_size", "poison_fraction")
"""``task``'s pixel-backdoor keys: its target, patch and poisoned share."""
SEMANTIC_KEYS = ("backdoor", "semantic_source", "semantic_quantile")
"""The semantic backdoor's keys, given to every task built on ``ImageClassificationTask`` (``simulation.with_backdoor``)."""
IMAGE_TASK_KEYS = PIXEL_KEYS + SEMANTIC_KEYS
BUILT_IN_DATASETS = ("digits",)
"""Data sets the lab builds in (scikit-learn's 8×8 digits): they read no ``data.path``."""


def reading(builder: Callable[[ExperimentConfig], Task], *, data: bool = True, params: bool = True,
            task_keys: tuple[str, ...] = ()) -> Callable[[ExperimentConfig], Task]:
    """``builder`` behind a check that refuses, before anything loads, the settings its task does not read:
    ``data`` unless ``data``, any ``task.params`` unless ``params``, and the :data:`IMAGE_TASK_KEYS` not in
    ``task_keys``, each where it differs from its default, and a ``data.path`` beside a
    :data:`BUILT_IN_DATASETS` name. A value that would be ignored (an SST-2 run given
    ``data.name: digits`` or an MNIST YAML, a target label on the text-to-image task) is a mistake, not a setting."""

    @functools.wraps(builder)
    def build(cfg: ExperimentConfig) -> Task:
        if not params and cfg.task.params:
            raise InputError(f"task.params {sorted(cfg.task.params)} mean nothing to {cfg.task.name}; "
                             "set task's own keys (target_label, trigger_size, poison_fraction, backdoor) or drop them")
        unread = [] if data else [f"data.{name}" for name in changed_fields(cfg.data)]
        unread += [f"task.{k}" for k in changed_fields(cfg.task) if k in IMAGE_TASK_KEYS and k not in task_keys]
        if unread:
            hint = "its data is task.params.data_path" if unread[0].startswith("data.") else "its own settings are task.params"
            raise InputError(f"{', '.join(unread)}: not read by task {cfg.task.name} ({hint}); drop them")
        if data and cfg.data.name in BUILT_IN_DATASETS and "path" in changed_fields(cfg.data):
            raise InputError(f"data.path: not read by data set {cfg.data.name} (it is built in); drop it, "
                             "or name the data set that lives there (data.name: mnist)")
        return builder(cfg)

    return build


TASKS: dict[str, Callable[[ExperimentConfig], Task]] = {
    "image_classification": reading(build_image_task, params=False, task_keys=IMAGE_TASK_KEYS),
    "sst2_classification": reading(build_sst2_task, data=False),
    "t2i_lora": reading(build_t2i_task),
    "unlearning_watermark": reading(unlearn_data.fed_task, task_keys=SEMANTIC_KEYS),
    "head_finetune": reading(build_head_finetune_task, task_keys=PIXEL_KEYS),  # its ASR is the hidden trigger's
    "recommendation": reading(build_recommendation_task),
}


def build_task(cfg: ExperimentConfig) -> Task:
    """The task named by ``cfg.task.name``, built from ``cfg`` (validated before any output is written)."""
    return experiment.build_task(cfg, TASKS)


def run_experiment(cfg: ExperimentConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) ``cfg`` into the run directory ``out``; returns the final summary."""
    cfg.validate()
    methods = build_methods(cfg)  # refuses a bad name or parameter before the task loads
    sim = Simulation(cfg, build_task(cfg), methods)
    with staged_output(out, resume=resume) as stage:
        _check_same_config(stage / "config.yaml", cfg) if resume else write_yaml(stage / "config.yaml", cfg)
        result = experiment.run_rounds(sim, stage, resume=resume, progress=progress, desc=out.name)
        summary = summarize(cfg, result.records)
        write_json(stage / "metrics.json", summary)
        write_report(stage / "report.html", {out.name: result.records}, title=f"Federated run {out.name}")
    return summary


def _check_same_config(path: Path, cfg: ExperimentConfig) -> None:
    """A resumed run must continue the experiment it started, not a changed one."""
    if not path.exists() or load_yaml(path) != yaml.safe_load(yaml.safe_dump(plain(cfg))):
        raise InputError(f"{path} differs from the config given now; resume with the original config and --seed")
