"""What the ``poisonlab unlearn`` commands do once their flags are parsed: load inputs, call the
entry points of :mod:`unlearning_verify`, and write run directories (config, metrics.json,
report.html) through :func:`poisonlab.runs.staged_output` (nothing is left behind on an error)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from labcore.errors import InputError
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, check_output, read_jsonl, staged_output, write_json, write_yaml
from poisonlab.unlearn_config import (
    BenchRunConfig, DeleteConfig, FedBenchRunConfig, MarkConfig, ServeConfig, UnlearnTrainConfig, VerifyCommandConfig)
from poisonlab.unlearn_data import image_data, load_marked, owner_samples, save_marked
from poisonlab.unlearn_http import create_app, http_endpoint, serve
from poisonlab.unlearn_models import load_model, save_model
from poisonlab.unlearn_report import bench_report
from unlearning_verify import bench as bench_mod
from unlearning_verify import providers, training
from unlearning_verify.deletion import DeletionVerdict, QueryData, verify_deletion
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import check_owners, mark, owner_split
from unlearning_verify.oracles import Endpoint, model_endpoint
from unlearning_verify.providers import Provider, ProviderState
from unlearning_verify.training import TrainConfig
from unlearning_verify.watermarks import build

TRAIN_OPTIONS = {"epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size", "schedule": "train.schedule"}


def key_values(items: list[str] | tuple[str, ...], option: str) -> dict[str, int | float | str]:
    """KEY=VALUE strings as a dict; values become int or float where they parse."""
    kw: dict[str, int | float | str] = {}
    for p in items:
        name, eq, value = p.partition("=")
        if not eq or not name:
            raise InputError(f"{option} {p!r} is not KEY=VALUE")
        try:
            kw[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            kw[name] = value
    return kw


def family_values(items: tuple[str, ...], families: list[str]) -> dict[str, dict]:
    """``--family-param FAMILY.KEY=VALUE`` items as {family: {key: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        name, _, kv = item.partition(".")
        if name not in families:
            raise InputError(f"--family-param {item!r} names no family of --families; use FAMILY.KEY=VALUE")
        out.setdefault(name, {}).update(key_values([kv], "--family-param"))
    return out


def mark_run(cfg: MarkConfig, out: Path) -> tuple[int, bool]:
    """Mark the owner's samples; returns (samples marked, whether a new key file was written)."""
    key_file = Path(cfg.key_file)
    x, y, _, _ = image_data(cfg.data)
    check_owners(len(x), cfg.owners, cfg.rate)
    num_classes = int(y.max()) + 1
    new_key = not key_file.exists()
    key = OwnerKey.generate(cfg.owner, cfg.family, num_classes) if new_key else OwnerKey.load(key_file)
    if (key.owner, key.family, key.num_classes) != (cfg.owner, cfg.family, num_classes):
        raise InputError(f"key file {key_file} belongs to owner {key.owner}, family {key.family}, "
                         f"{key.num_classes} classes; pass matching options or a new --key-file")
    wm = build(key, tuple(x.shape[1:]))
    marked = mark(x, y, owner_split(len(x), cfg.owners, cfg.seed), cfg.owner, wm, cfg.rate, cfg.seed)
    with staged_output(out) as stage:
        metrics = save_marked(stage, marked, x, wm, dataclasses.asdict(cfg))  # writes config.yaml (reruns)
        if new_key:
            key.save(key_file)
    return metrics["marked"], new_key


@contextmanager
def step_bar(desc: str, total: int | None = None, log: Callable[[int, dict], None] | None = None) -> Iterator[None]:
    """A tqdm bar over the optimiser steps of every ``training.train`` call inside the block (a
    provider may retrain several models: then no total); ``log(step, values)`` gets loss and lr."""
    with tqdm(desc=desc, total=total, unit="step", disable=None) as bar:  # None: on a terminal only
        def on_step(loss: float, lr: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if log is not None:
                log(bar.n, {"loss": loss, "lr": lr})
        token = training.STEP_HOOK.set(on_step)
        try:
            yield
        finally:
            training.STEP_HOOK.reset(token)


def train_run(cfg: UnlearnTrainConfig, out: Path) -> None:
    check_output(out)
    ds, x, y = load_marked(Path(cfg.dataset))
    torch.set_num_threads(1)
    with staged_output(out) as stage:
        tracker = tracker_for(cfg, stage)
        steps = cfg.train.epochs * -(-len(x) // cfg.train.batch_size)
        with step_bar("unlearn train", steps, None if tracker is None else lambda step, v: tracker.log(v, step=step)):
            model, ckpts = training.fit(x, y, ds.features["label"].num_classes, cfg.train, cfg.seed)
        if tracker is not None:
            tracker.end_training()
        save_model(model, stage, tuple(x.shape[1:]), ds.features["label"].num_classes, ckpts)
        write_yaml(stage / "config.yaml", cfg)
        write_json(stage / "metrics.json", {"train_accuracy": training.accuracy(model, x, y)})


def tracker_for(cfg: UnlearnTrainConfig, stage: Path):
    """An accelerate ``Accelerator`` logging to ``stage/logs`` with ``cfg.report_to`` (None: no logging)."""
    if cfg.report_to is None:
        return None
    from labcore.trackers import tracked_accelerator

    return tracked_accelerator(cfg.report_to, stage / "logs" / "unlearn-train",
                               {"dataset": cfg.dataset, "seed": cfg.seed, **dataclasses.asdict(cfg.train)})


def provider_for(cfg: DeleteConfig) -> Provider:
    """The behaviour ``cfg.behaviour`` with its ``--param`` values; refuses training options set away from
    their defaults that the behaviour does not read."""
    provider = providers.get(cfg.behaviour, **cfg.params)
    default = TrainConfig()
    unread = [TRAIN_OPTIONS[f] for f in providers.TRAIN_FIELDS
              if f not in provider.reads_train and getattr(cfg.train, f) != getattr(default, f)]
    if unread:
        reads = ", ".join(TRAIN_OPTIONS[f] for f in provider.reads_train)
        own = ", ".join(providers.parameters(cfg.behaviour))
        raise InputError(f"behaviour {cfg.behaviour} " + (f"reads only {reads} of the training options" if reads else "trains no model")
                         + f", so {', '.join(unread)} would be ignored; drop " + ("it" if len(unread) == 1 else "them")
                         + (f" (its own knobs: --param {own})" if own else ""))
    return provider


def provider_model(cfg: DeleteConfig) -> tuple[torch.nn.Module, dict, bool]:
    """The model a provider behaviour serves after the owner's deletion request: (model, config, honest)."""
    provider = provider_for(cfg)
    if cfg.dataset is None or cfg.owner is None:
        raise InputError(f"--behaviour {cfg.behaviour} needs --dataset and --owner (the deletion request it answers)")
    ds, x, y = load_marked(Path(cfg.dataset))
    forget = np.asarray(ds["owner"]) == cfg.owner
    if not forget.any():
        raise InputError(f"owner {cfg.owner} holds no samples in {cfg.dataset}")
    model, mcfg, ckpts = load_model(Path(cfg.model))
    torch.set_num_threads(1)
    state = ProviderState(x, y, forget, model, ckpts, mcfg["num_classes"], cfg.train, cfg.seed)
    with step_bar(f"unlearn {cfg.behaviour}"):
        served = provider.unlearn(state)
    return served, mcfg, provider.honest


def delete_run(cfg: DeleteConfig, out: Path) -> None:
    check_output(out)
    served, mcfg, honest = provider_model(cfg)
    with staged_output(out) as stage:
        save_model(served, stage, (mcfg["channels"], mcfg["image_size"], mcfg["image_size"]), mcfg["num_classes"])
        write_yaml(stage / "config.yaml", cfg)
        write_json(stage / "metrics.json", {"honest": honest})


def serve_run(cfg: ServeConfig, announce: Callable[[str], None]) -> None:
    """Serve the model (after ``cfg.behaviour``) on 127.0.0.1:``cfg.port`` until interrupted."""
    if cfg.behaviour == "noop" and cfg.dataset is None:
        provider_for(cfg)  # refuses parameters and training options noop does not read
        model, mcfg, _ = load_model(Path(cfg.model))
    else:
        model, mcfg, _ = provider_model(cfg)
    shape = (mcfg["channels"], mcfg["image_size"], mcfg["image_size"])
    torch.set_num_threads(1)
    serve(create_app(model.eval(), shape, cfg.output), "127.0.0.1", cfg.port, announce)


def local_endpoint(path: Path, option: str, key: OwnerKey, shape: tuple[int, ...]) -> Endpoint:
    model, cfg, _ = load_model(path)
    if cfg["num_classes"] != key.num_classes or (cfg["channels"], cfg["image_size"]) != (shape[0], shape[-1]):
        raise InputError(f"{option} model has {cfg['num_classes']} classes on {cfg['channels']}×{cfg['image_size']}² "
                         f"images, but the key has {key.num_classes} classes and the data is {shape[0]}×{shape[-1]}²; "
                         "pass --data naming the data the model was trained on (e.g. --data digits) and a model of the owner's label space")
    return model_endpoint(model)


def verify_run(cfg: VerifyCommandConfig, out: Path | None) -> DeletionVerdict:
    """Load the key, the models or endpoint and the query data; verify; write ``verdict.json``."""
    from unlearning_verify.verify import check_settings

    v = cfg.verify
    check_settings(v.alpha, v.beta, v.max_queries)
    cfg.client.validate()
    if out is not None:
        check_output(out)  # before any query: a bad --out costs nothing and prints nothing else
    key = OwnerKey.load(Path(cfg.key))
    if key.family == "hidden_trigger":
        raise InputError("verify works on dirty-label image families; the key is hidden_trigger")
    _, _, xt, yt = image_data(cfg.data)
    shape = tuple(xt.shape[1:])
    torch.set_num_threads(1)
    before = local_endpoint(Path(cfg.before), "--before", key, shape)
    reference = local_endpoint(Path(cfg.reference), "--reference", key, shape) if cfg.reference else None
    served = (local_endpoint(Path(cfg.model), "--model", key, shape) if cfg.model
              else http_endpoint(cfg.endpoint, cfg.client, shape, key.num_classes))
    owner = QueryData(*owner_samples(Path(cfg.owner_data), key.owner)) if cfg.owner_data else None
    with tqdm(desc="unlearn verify", unit="query", disable=None) as bar:  # None: on a terminal only
        counted = dataclasses.replace(served, labels_fn=counting(served.labels_fn, bar),
                                      probabilities_fn=served.probabilities_fn and counting(served.probabilities_fn, bar))
        verdict = verify_deletion(before, counted, build(key, shape), v, data=QueryData(xt, yt), reference=reference,
                                  owner=owner)
    if out is not None:
        with staged_output(out) as stage:
            write_json(stage / "verdict.json", {"verdict": verdict.as_dict()})
            write_yaml(stage / "config.yaml", cfg)
    return verdict


def counting(fn: Callable[[torch.Tensor], torch.Tensor], bar: tqdm) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` that advances ``bar`` by the images of every query batch sent to the served model."""
    def call(x: torch.Tensor) -> torch.Tensor:
        out = fn(x)
        bar.update(len(x))
        return out
    return call


def bench_run(run_cfg: BenchRunConfig, out: Path, resume: bool) -> list[dict]:
    """Run (or resume) the benchmark into ``out``; returns the summary rows."""
    cfg, data_name = run_cfg.bench, run_cfg.data
    cfg.validate()
    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    cfg.check_data(len(x))
    started = time.time()
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", run_cfg)
        rows_path = stage / "trials.jsonl"
        done = {(r["family"], r["behaviour"], r["seed"]) for r in read_jsonl(rows_path)}
        total = len(cfg.families) * len(cfg.behaviours) * len(cfg.seeds)
        with tqdm(total=total, initial=len(done), desc="unlearn bench", unit="trial") as bar:
            bench_mod.run(cfg, x, y, xt, yt, int(y.max()) + 1, done, lambda r: append_jsonl(rows_path, r),
                          bar.update, bench_mod.ModelCache(stage / "cache"))
        rows = read_jsonl(rows_path)
        summary = bench_mod.summarise(rows)
        write_json(stage / "metrics.json", {"summary": summary, "trials": len(rows),
                                            "wall_time_s": time.time() - started})
        report = Report("Unlearning verification benchmark")
        bench_report(report, cfg, summary, xt[:4])
        report.save(stage / "report.html")
        shutil.rmtree(stage / "cache", ignore_errors=True)
    return summary


def bench_fed_run(run_cfg: FedBenchRunConfig, out: Path, resume: bool) -> list[dict]:
    """The federated benchmark into ``out``; returns its rows."""
    from unlearning_verify import bench_federated as bf

    cfg, data_name = run_cfg.bench, run_cfg.data
    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    check_owners(min(len(x), cfg.train_samples or len(x)), cfg.num_clients, cfg.rate, "--clients")
    started = time.time()
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", run_cfg)
        rows_path = stage / "trials.jsonl"
        done = {r["seed"] for r in read_jsonl(rows_path)}
        for s in tqdm(cfg.seeds, desc="federated bench", unit="seed"):
            bf.run(dataclasses.replace(cfg, seeds=[s]), x, y, xt, yt, int(y.max()) + 1, done,
                   lambda r: append_jsonl(rows_path, r))
        rows = read_jsonl(rows_path)
        summary = bench_mod.summarise([{**r, "marking_cost": None} for r in rows])
        write_json(stage / "metrics.json", {"summary": summary, "trials": rows, "wall_time_s": time.time() - started})
        report = Report("Unlearning verification: federated owner")
        report.paragraph(f"{cfg.num_clients} clients, FedAvg for {cfg.rounds} rounds on the harness simulation; the "
                         f"owner (client 0) marks {cfg.rate:.0%} of its samples. q from a reference federation "
                         "trained without the owner.")
        report.table(summary, caption="Verdict rates per behaviour")
        report.table(rows, caption="Verdict per seed and behaviour")
        report.save(stage / "report.html")
    return rows
