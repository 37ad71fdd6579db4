"""A federated experiment as a run directory: config.yaml, rounds.jsonl, checkpoints/, metrics.json,
report.html. ``resume`` continues an interrupted run from its last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml
from tqdm.auto import tqdm

from fedharness import aggregators, checkpoint
from fedharness.attacks.pixel_backdoor import PixelPattern
from fedharness.config import ExperimentConfig
from labcore.errors import InputError
from fedharness.simulation import Simulation
from fedharness.tasks import Task
from fedharness.tasks.image_classification import ImageClassificationTask
from poisonlab import data
from poisonlab.fed_report import summarize, write_report
from poisonlab.fedrec_task import build_recommendation_task
from poisonlab.config import load_yaml
from poisonlab.runs import append_jsonl, plain, read_jsonl, staged_output, write_json, write_jsonl, write_yaml

IMAGE_DATASETS = ("mnist", "digits")


def build_image_task(cfg: ExperimentConfig) -> ImageClassificationTask:
    """The image-classification task for ``cfg.data`` (validated before any output is written)."""
    if cfg.data.name not in IMAGE_DATASETS:
        raise InputError(f"data.name {cfg.data.name!r} is not an image dataset; use one of {', '.join(IMAGE_DATASETS)}")
    ds = data.load(cfg.data.name, cfg.data.path)
    x_train, y_train = data.image_tensors(ds["train"])
    x_test, y_test = data.image_tensors(ds["test"])
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if cfg.task.target_label >= num_classes:
        raise InputError(f"task.target_label {cfg.task.target_label} is not a class of {cfg.data.name} (0..{num_classes - 1})")
    try:
        PixelPattern(size=cfg.task.trigger_size).mask_and_pattern(x_train.shape[-2], x_train.shape[-1])
    except ValueError as exc:
        raise InputError(f"task.trigger_size: {exc}") from None
    return ImageClassificationTask(
        x_train, y_train, x_test, y_test,
        target_label=cfg.task.target_label,
        trigger=PixelPattern(size=cfg.task.trigger_size),
        poison_fraction=cfg.task.poison_fraction,
        num_classes=num_classes,
    )


TASKS: dict[str, Callable[[ExperimentConfig], Task]] = {
    "image_classification": build_image_task,
    "recommendation": build_recommendation_task,
}


def build_task(cfg: ExperimentConfig) -> Task:
    """The task named by ``cfg.task.name``, built from ``cfg`` (validated before any output is written)."""
    builder = TASKS.get(cfg.task.name)
    if builder is None:
        raise InputError(f"task.name {cfg.task.name!r} is unknown; use one of {', '.join(sorted(TASKS))}")
    return builder(cfg)


def run_experiment(cfg: ExperimentConfig, out: Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) ``cfg`` into the run directory ``out``; returns the final summary."""
    cfg.validate()
    task = build_task(cfg)
    sim = Simulation(cfg, task)
    with staged_output(out, resume=resume) as stage:
        _check_same_config(stage / "config.yaml", cfg) if resume else write_yaml(stage / "config.yaml", cfg)
        ckpt_dir = stage / "checkpoints"
        state = checkpoint.load(ckpt_dir) if resume else None
        if state is None:
            first, global_vec = 1, sim.initial_global()
            records: list[dict] = []
        else:
            done, global_vec, aggregator_state = state
            aggregators.load_state_dict(sim.aggregator, aggregator_state)
            first = done + 1
            records = [r for r in read_jsonl(stage / "rounds.jsonl") if r["round"] <= done]
        write_jsonl(stage / "rounds.jsonl", records)
        bar = tqdm(total=cfg.federation.rounds, initial=first - 1, desc=out.name, unit="round", disable=not progress)
        for global_vec, record in _rounds(sim, global_vec, first):
            append_jsonl(stage / "rounds.jsonl", record)
            checkpoint.save(ckpt_dir, record["round"], global_vec, aggregators.state_dict(sim.aggregator))
            records.append(record)
            bar.set_postfix(mta=f"{record['main_accuracy']:.3f}", asr=f"{record['attack_success_rate']:.3f}")
            bar.update()
        bar.close()
        summary = summarize(cfg, records)
        write_json(stage / "metrics.json", summary)
        write_report(stage / "report.html", {out.name: records}, title=f"Federated run {out.name}")
    return summary


def _check_same_config(path: Path, cfg: ExperimentConfig) -> None:
    """A resumed run must continue the experiment it started, not a changed one."""
    if not path.exists() or load_yaml(path) != yaml.safe_load(yaml.safe_dump(plain(cfg))):
        raise InputError(f"{path} differs from the config given now; resume with the original config and --seed")


def _rounds(sim: Simulation, global_vec, first: int):
    """The configured engine's round iterator (Flower is imported only when asked for)."""
    if sim.cfg.engine.name == "flower":
        from fedharness.engines.flower import rounds as flower_rounds

        return flower_rounds(sim, global_vec, first)
    return sim.rounds(global_vec, first)


