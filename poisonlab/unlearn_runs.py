"""What the ``poisonlab unlearn`` commands do once their flags are parsed: load inputs, call the
entry points of :mod:`unlearning_verify`, and write run directories (config, metrics.json,
report.html) through :func:`poisonlab.runs.staged_output` (nothing is left behind on an error)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from labcore.errors import InputError
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, read_jsonl, staged_output, write_json, write_yaml
from poisonlab.unlearn_data import image_data, load_marked, owner_samples, save_marked
from poisonlab.unlearn_http import ClientConfig, create_app, http_endpoint, serve
from poisonlab.unlearn_models import load_model, save_model
from poisonlab.unlearn_report import bench_report
from unlearning_verify import bench as bench_mod
from unlearning_verify import providers, training
from unlearning_verify.deletion import DeletionVerdict, QueryData, VerifyConfig, verify_deletion
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.oracles import Endpoint, model_endpoint
from unlearning_verify.providers import ProviderState
from unlearning_verify.training import TrainConfig
from unlearning_verify.watermarks import IMAGE_FAMILIES, build


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


def mark_run(meta: dict, key_file: Path, out: Path) -> tuple[int, bool]:
    """Mark the owner's samples; returns (samples marked, whether a new key file was written)."""
    if not 0 <= meta["owner"] < meta["owners"]:
        raise InputError(f"--owner must lie in 0..{meta['owners'] - 1}, got {meta['owner']}")
    if not 0.0 < meta["rate"] <= 1.0:
        raise InputError(f"--rate must lie in (0, 1], got {meta['rate']}")
    x, y, _, _ = image_data(meta["data"])
    num_classes = int(y.max()) + 1
    new_key = not key_file.exists()
    key = OwnerKey.generate(meta["owner"], meta["family"], num_classes) if new_key else OwnerKey.load(key_file)
    if (key.owner, key.family, key.num_classes) != (meta["owner"], meta["family"], num_classes):
        raise InputError(f"key file {key_file} belongs to owner {key.owner}, family {key.family}, "
                         f"{key.num_classes} classes; pass matching options or a new --key-file")
    wm = build(key, tuple(x.shape[1:]))
    marked = mark(x, y, owner_split(len(x), meta["owners"], meta["seed"]), meta["owner"], wm, meta["rate"], meta["seed"])
    with staged_output(out) as stage:
        metrics = save_marked(stage, marked, x, wm, meta)
        if new_key:
            key.save(key_file)
    return metrics["marked"], new_key


def train_run(dataset: Path, out: Path, cfg: TrainConfig, seed: int) -> None:
    ds, x, y = load_marked(dataset)
    torch.set_num_threads(1)
    with staged_output(out) as stage:
        model, ckpts = training.fit(x, y, ds.features["label"].num_classes, cfg, seed)
        save_model(model, stage, tuple(x.shape[1:]), ds.features["label"].num_classes, ckpts)
        write_yaml(stage / "train_config.yaml", {"dataset": str(dataset), **cfg.__dict__, "seed": seed})
        write_json(stage / "metrics.json", {"train_accuracy": training.accuracy(model, x, y)})


def provider_model(model_dir: Path, dataset: Path, owner: int, behaviour: str, params: dict, cfg: TrainConfig,
                   seed: int) -> tuple[torch.nn.Module, dict, bool]:
    """The model a provider behaviour serves after the owner's deletion request: (model, config, honest)."""
    provider = providers.get(behaviour, **params)
    if dataset is None or owner is None:
        raise InputError(f"--behaviour {behaviour} needs --dataset and --owner (the deletion request it answers)")
    ds, x, y = load_marked(dataset)
    forget = np.asarray(ds["owner"]) == owner
    if not forget.any():
        raise InputError(f"owner {owner} holds no samples in {dataset}")
    model, mcfg, ckpts = load_model(model_dir)
    torch.set_num_threads(1)
    state = ProviderState(x, y, forget, model, ckpts, mcfg["num_classes"], cfg, seed)
    return provider.unlearn(state), mcfg, provider.honest


def delete_run(model_dir: Path, dataset: Path, owner: int, behaviour: str, params: dict, out: Path,
               cfg: TrainConfig, seed: int) -> None:
    served, mcfg, honest = provider_model(model_dir, dataset, owner, behaviour, params, cfg, seed)
    with staged_output(out) as stage:
        save_model(served, stage, (mcfg["channels"], mcfg["image_size"], mcfg["image_size"]), mcfg["num_classes"])
        write_yaml(stage / "delete_config.yaml", {"behaviour": behaviour, "params": params, "owner": owner,
                                                 "honest": honest, "seed": seed})


def serve_run(model_dir: Path, behaviour: str, dataset: Path | None, owner: int | None, params: dict, output: str,
              port: int, cfg: TrainConfig, seed: int, announce: Callable[[str], None]) -> None:
    """Serve the model (after ``behaviour``) on 127.0.0.1:``port`` until interrupted."""
    if behaviour == "noop" and dataset is None:
        model, mcfg, _ = load_model(model_dir)
    else:
        model, mcfg, _ = provider_model(model_dir, dataset, owner, behaviour, params, cfg, seed)
    shape = (mcfg["channels"], mcfg["image_size"], mcfg["image_size"])
    torch.set_num_threads(1)
    serve(create_app(model.eval(), shape, output), "127.0.0.1", port, announce)


@dataclass
class VerifySources:
    """Where the verifier's inputs come from (paths, or the served model's URL)."""

    model_dir: Path | None
    endpoint: str | None
    before: Path
    reference: Path | None
    owner_data: Path | None
    data_name: str
    client: ClientConfig


def local_endpoint(path: Path, option: str, key: OwnerKey, shape: tuple[int, ...]) -> Endpoint:
    model, cfg, _ = load_model(path)
    if cfg["num_classes"] != key.num_classes or (cfg["channels"], cfg["image_size"]) != (shape[0], shape[-1]):
        raise InputError(f"{option} model has {cfg['num_classes']} classes on {cfg['channels']}×{cfg['image_size']}² "
                         f"images, but the key has {key.num_classes} classes and the data is {shape[0]}×{shape[-1]}²; "
                         "pass a model of the owner's label space")
    return model_endpoint(model)


def verify_run(src: VerifySources, key_file: Path, cfg: VerifyConfig, out: Path | None) -> DeletionVerdict:
    """Load the key, the models or endpoint and the query data; verify; write ``verdict.json``."""
    from unlearning_verify.verify import check_settings

    check_settings(cfg.alpha, cfg.beta, cfg.max_queries)
    key = OwnerKey.load(key_file)
    if key.family == "hidden_trigger":
        raise InputError("verify works on dirty-label image families; the key is hidden_trigger")
    _, _, xt, yt = image_data(src.data_name)
    shape = tuple(xt.shape[1:])
    torch.set_num_threads(1)
    before = local_endpoint(src.before, "--before", key, shape)
    reference = local_endpoint(src.reference, "--reference", key, shape) if src.reference else None
    served = (local_endpoint(src.model_dir, "--model", key, shape) if src.model_dir
              else http_endpoint(src.endpoint, src.client, shape, key.num_classes))
    owner = QueryData(*owner_samples(src.owner_data, key.owner)) if src.owner_data else None
    verdict = verify_deletion(before, served, build(key, shape), cfg, data=QueryData(xt, yt), reference=reference,
                              owner=owner)
    if out is not None:
        with staged_output(out) as stage:
            write_json(stage / "verdict.json", {"verdict": verdict.as_dict()})
            write_yaml(stage / "config.yaml", {**{k: str(v) if isinstance(v, Path) else v
                                                  for k, v in dataclasses.asdict(src).items()}, **cfg.__dict__})
    return verdict


def bench_run(cfg: bench_mod.BenchConfig, data_name: str, out: Path, resume: bool) -> list[dict]:
    """Run (or resume) the benchmark into ``out``; returns the summary rows."""
    from unlearning_verify.verify import check_settings

    check_settings(cfg.alpha, cfg.beta, cfg.max_queries)
    if not cfg.seeds:
        raise InputError("--seeds must be ≥ 1")
    for b in cfg.behaviours:
        providers.get(b)
    for f in cfg.families:
        if f not in IMAGE_FAMILIES:
            raise InputError(f"unknown watermark family {f!r}; choose from: {', '.join(IMAGE_FAMILIES)}")
    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    started = time.time()
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", {"data": data_name, **cfg.__dict__})
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


def bench_fed_run(cfg, data_name: str, out: Path, resume: bool) -> list[dict]:
    """The federated benchmark into ``out``; returns its rows."""
    from unlearning_verify import bench_federated as bf

    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    started = time.time()
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", {"data": data_name, **cfg.__dict__})
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
