"""``poisonlab unlearn``: mark data, simulate providers, verify deletion, benchmark.

The research code lives in :mod:`unlearning_verify`; this file loads data, validates input, and
writes run directories (config, metrics.json, report.html) through :func:`poisonlab.runs.staged_output`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import click
import numpy as np
import torch
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk
from tqdm import tqdm

from labcore.errors import InputError
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, read_jsonl, staged_output, write_json, write_text, write_yaml
from poisonlab.unlearn_models import load_model, save_model
from poisonlab.unlearn_report import marked_examples
from unlearning_verify import bench as bench_mod
from unlearning_verify import providers, training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark as mark_owner
from unlearning_verify.marking import owner_split
from unlearning_verify.membership import matched_non_members, membership_test
from unlearning_verify.oracles import torch_oracle
from unlearning_verify.providers import ProviderState
from unlearning_verify.training import TrainConfig
from unlearning_verify.verify import calibrate, check_settings, held_out_owner_hits, hits, query_pool, verify
from unlearning_verify.watermarks import IMAGE_FAMILIES, build

DIRTY_LABEL_FAMILIES = tuple(f for f in IMAGE_FAMILIES if f != "hidden_trigger")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _key_values(items: list[str] | tuple[str, ...], option: str) -> dict[str, int | float | str]:
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


def image_data(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ds = data.load(name)
    if "image" not in ds["train"].column_names:
        raise InputError(f"dataset {name!r} has no images; use mnist or digits")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


@click.group()
def unlearn() -> None:
    """Backdoor watermarks that verify whether an unlearning request was honoured."""


def _marked_features(side: int, num_classes: int) -> Features:
    names = [str(i) for i in range(num_classes)]
    return Features({"image": Array2D(shape=(side, side), dtype="uint8"), "label": ClassLabel(names=names),
                     "original_label": ClassLabel(names=names), "owner": Value("int64"), "marked": Value("bool")})


DATASET_CARD = """# Watermarked training set (poisonlab unlearn mark)

Source: `{data}` train split ({n} images). Owners: an IID split into {owners} shares (seed {seed}).
Owner {owner} marked {marked} of its {owned} samples with the `{family}` watermark (rate {rate}).

Columns: `image` (uint8 {side}×{side}), `label` (the label to train on: marked samples carry the owner's
target class), `original_label`, `owner`, `marked`. `samples.jsonl` lists the same metadata per row.
The owner's key is in a separate, owner-only key file and is not part of this dataset.

Invisibility of the marked images vs their originals: PSNR {psnr:.2f} dB, SSIM {ssim:.4f},
max |Δ| {maxd:.4f}.
"""


def load_marked(folder: Path) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    if not (Path(folder) / "dataset").is_dir():
        raise InputError(f"{folder} is not a marked dataset folder; pass the --out of 'poisonlab unlearn mark'")
    ds = load_from_disk(str(Path(folder) / "dataset"))["train"]
    x, y = data.image_tensors(ds)
    return ds, x, y


@unlearn.command("mark")
@click.option("--data", "data_name", default="mnist", show_default=True, help="Image dataset (mnist, digits).")
@click.option("--owner", type=int, required=True, help="Owner id (0..owners-1) whose samples are marked.")
@click.option("--owners", type=int, default=10, show_default=True, help="Number of owners (IID split).")
@click.option("--family", default="lsb", show_default=True, type=click.Choice(DIRTY_LABEL_FAMILIES))
@click.option("--rate", type=float, default=0.5, show_default=True, help="Fraction of the owner's samples marked.")
@click.option("--key-file", type=click.Path(path_type=Path), required=True,
              help="Owner's key: created (mode 600) if absent, reused if present.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the marked dataset.")
@click.option("--seed", type=int, default=0, show_default=True)
def mark_cmd(data_name: str, owner: int, owners: int, family: str, rate: float, key_file: Path, out: Path,
             seed: int) -> None:
    """Mark owner N's samples with a key-derived watermark; write the dataset and the private key file."""
    if not 0 <= owner < owners:
        raise InputError(f"--owner must lie in 0..{owners - 1}, got {owner}")
    if not 0.0 < rate <= 1.0:
        raise InputError(f"--rate must lie in (0, 1], got {rate}")
    x, y, _, _ = image_data(data_name)
    num_classes = int(y.max()) + 1
    new_key = not key_file.exists()
    key = OwnerKey.generate(owner, family, num_classes) if new_key else OwnerKey.load(key_file)
    if (key.owner, key.family, key.num_classes) != (owner, family, num_classes):
        raise InputError(f"key file {key_file} belongs to owner {key.owner}, family {key.family}, "
                         f"{key.num_classes} classes; pass matching options or a new --key-file")
    wm = build(key, tuple(x.shape[1:]))
    owner_of = owner_split(len(x), owners, seed)
    marked = mark_owner(x, y, owner_of, owner, wm, rate, seed)
    with staged_output(out) as stage:
        side = x.shape[-1]
        rows = {"image": (marked.x[:, 0] * 255).round().to(torch.uint8).numpy(), "label": marked.y.numpy(),
                "original_label": marked.original_y.numpy(), "owner": owner_of, "marked": marked.marked}
        DatasetDict(train=Dataset.from_dict(rows, features=_marked_features(side, num_classes))).save_to_disk(
            str(stage / "dataset"))
        for i in range(len(x)):
            append_jsonl(stage / "samples.jsonl", {"index": i, "label": int(rows["label"][i]),
                                                   "original_label": int(rows["original_label"][i]),
                                                   "owner": int(owner_of[i]), "marked": bool(marked.marked[i])})
        inv = marked.invisibility
        write_text(stage / "README.md", DATASET_CARD.format(
            data=data_name, n=len(x), owners=owners, seed=seed, owner=owner, marked=int(marked.marked.sum()),
            owned=int((owner_of == owner).sum()), family=family, rate=rate, side=side, psnr=inv["psnr"],
            ssim=inv["ssim"], maxd=inv["max_abs_change"]))
        write_yaml(stage / "config.yaml", {"data": data_name, "owner": owner, "owners": owners, "family": family,
                                          "rate": rate, "seed": seed})
        metrics = {"marked": int(marked.marked.sum()), "owner_samples": int((owner_of == owner).sum()),
                   "invisibility": inv}
        write_json(stage / "metrics.json", metrics)
        report = Report(f"Watermark {family}: owner {owner}")
        report.table([{"family": family, "marked": metrics["marked"], **inv}], caption="Marking and invisibility")
        idx = torch.as_tensor(np.flatnonzero(marked.marked)[:4])
        marked_examples(report, {family: wm}, x[idx], "Original, marked, |Δ|×10")
        report.save(stage / "report.html")
        if new_key:
            key.save(key_file)
    click.echo(f"marked {metrics['marked']} samples of owner {owner} into {out}"
               + (f"; new key written to {key_file} (mode 600)" if new_key else ""))


def train_config(epochs: int, lr: float, batch_size: int) -> TrainConfig:
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError(f"need --epochs ≥ 1, --batch-size ≥ 1 and --lr > 0; got {epochs}, {batch_size}, {lr}")
    return TrainConfig(epochs, lr, batch_size)


@unlearn.command("train")
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="Folder written by 'unlearn mark'.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Model folder.")
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train_cmd(dataset: Path, out: Path, epochs: int, lr: float, batch_size: int, seed: int) -> None:
    """Simulated provider: train the lab's SmallCNN on a (marked) dataset; keeps per-epoch checkpoints."""
    cfg = train_config(epochs, lr, batch_size)
    ds, x, y = load_marked(dataset)
    num_classes = ds.features["label"].num_classes
    torch.set_num_threads(1)
    with staged_output(out) as stage:
        model, ckpts = training.fit(x, y, num_classes, cfg, seed)
        save_model(model, stage, tuple(x.shape[1:]), num_classes, ckpts)
        write_yaml(stage / "train_config.yaml", {"dataset": str(dataset), **cfg.__dict__, "seed": seed})
        write_json(stage / "metrics.json", {"train_accuracy": training.accuracy(model, x, y)})
    click.echo(f"model written to {out}")


@unlearn.command("delete")
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="The training set (from 'mark').")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="The served model.")
@click.option("--owner", type=int, required=True, help="Owner whose samples must be deleted.")
@click.option("--behaviour", required=True, help="Provider behaviour (retrain, sisa, finetune, noop, ...).")
@click.option("--param", "params", multiple=True, help="Behaviour parameter KEY=VALUE (number), repeatable.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the model served afterwards.")
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True, help="Training epochs of retraining behaviours.")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def delete_cmd(dataset: Path, model_dir: Path, owner: int, behaviour: str, params: tuple[str, ...], out: Path,
               epochs: int, lr: float, batch_size: int, seed: int) -> None:
    """Simulated provider answering a deletion request with an honest or dishonest behaviour."""
    kw = _key_values(params, "--param")
    provider = providers.get(behaviour, **kw)
    ds, x, y = load_marked(dataset)
    forget = np.asarray(ds["owner"]) == owner
    if not forget.any():
        raise InputError(f"owner {owner} holds no samples in {dataset}")
    model, cfg, ckpts = load_model(model_dir)
    torch.set_num_threads(1)
    state = ProviderState(x, y, forget, model, ckpts, cfg["num_classes"], train_config(epochs, lr, batch_size), seed)
    with staged_output(out) as stage:
        served = provider.unlearn(state)
        save_model(served, stage, tuple(x.shape[1:]), cfg["num_classes"])
        write_yaml(stage / "delete_config.yaml", {"behaviour": behaviour, "params": kw, "owner": owner,
                                                 "honest": provider.honest, "seed": seed})
    click.echo(f"{behaviour}: served model written to {out}")


@unlearn.command("verify")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="The model served after deletion.")
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True, help="The owner's key file.")
@click.option("--before", type=click.Path(path_type=Path), required=True,
              help="The model before the deletion request (calibrates p).")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="A model that never saw the owner's data (calibrates q); default: held-out owners' keys.")
@click.option("--queries", type=int, default=30, show_default=True, help="Query budget.")
@click.option("--alpha", type=float, default=1e-3, show_default=True, help="False accusation rate.")
@click.option("--beta", type=float, default=1e-3, show_default=True, help="Miss rate.")
@click.option("--sequential", is_flag=True, help="Wald SPRT: stop as soon as a boundary is crossed.")
@click.option("--owner-data", type=click.Path(path_type=Path), default=None,
              help="The marked dataset: runs the membership check on the owner's unmarked samples.")
@click.option("--data", "data_name", default="mnist", show_default=True, help="Where fresh query images come from (test split).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write verdict.json / report here.")
@click.option("--seed", type=int, default=0, show_default=True)
def verify_cmd(model_dir: Path, key_file: Path, before: Path, reference: Path | None, queries: int, alpha: float,
               beta: float, sequential: bool, owner_data: Path | None, data_name: str, out: Path | None,
               seed: int) -> None:
    """Exact binomial test (or SPRT): HONORED / NOT HONORED / INCONCLUSIVE."""
    check_settings(alpha, beta, queries)
    key = OwnerKey.load(key_file)
    if key.family not in DIRTY_LABEL_FAMILIES:
        raise InputError(f"verify works on image families {', '.join(DIRTY_LABEL_FAMILIES)}; key is {key.family}")
    models = {name: load_model(path) for name, path in (("model", model_dir), ("before", before), ("reference", reference)) if path}
    _, _, xt, yt = image_data(data_name)
    for name, (_, cfg, _) in models.items():
        if cfg["num_classes"] != key.num_classes or (cfg["channels"], cfg["image_size"]) != (xt.shape[1], xt.shape[-1]):
            raise InputError(f"--{name} model has {cfg['num_classes']} classes on {cfg['channels']}×{cfg['image_size']}² "
                             f"images, but the key has {key.num_classes} classes and {data_name} is "
                             f"{xt.shape[1]}×{xt.shape[-1]}²; pass a model of the owner's label space")
    torch.set_num_threads(1)
    wm = build(key, tuple(xt.shape[1:]))
    pool = query_pool(xt, yt, wm.target, None, seed)
    cal_idx, ver_idx = pool[: len(pool) // 2], pool[len(pool) // 2:]
    cal = wm.trigger(xt[cal_idx])
    before_oracle = torch_oracle(models["before"][0])
    if "reference" in models:
        q_hits, q_trials, q_source = hits(torch_oracle(models["reference"][0]), cal, wm.target), len(cal), "reference model"
        floor = 0.0
    else:
        q_hits, q_trials = held_out_owner_hits(before_oracle, key.family, xt[cal_idx], yt[cal_idx], key.num_classes, seed=seed)
        q_source, floor = "held-out owners (floor 1/K)", 1.0 / key.num_classes
    calibration = calibrate(hits(before_oracle, cal, wm.target), len(cal), q_hits, q_trials, key.num_classes,
                            alpha, beta, q_source, q_floor=floor)
    served = models["model"][0]
    verdict = verify(torch_oracle(served), wm.trigger(xt[ver_idx]), wm.target, calibration, alpha=alpha, beta=beta,
                     max_queries=queries, sequential=sequential)
    result = {"verdict": verdict.as_dict(), "calibration": {**calibration.__dict__, "p_hat": calibration.p_hat,
                                                           "q_hat": calibration.q_hat}}
    if owner_data is not None:
        ds, x, y = load_marked(owner_data)
        genuine = torch.as_tensor((np.asarray(ds["owner"]) == key.owner) & ~np.asarray(ds["marked"]))
        non = torch.as_tensor(matched_non_members(y[genuine].numpy(), yt.numpy(), 2, seed))
        ref = models.get("reference", (None,))[0]
        mia = membership_test(
            training.per_sample_loss(served, x[genuine], y[genuine]).numpy(),
            training.per_sample_loss(served, xt[non], yt[non]).numpy(),
            reference_member_losses=None if ref is None else training.per_sample_loss(ref, x[genuine], y[genuine]).numpy(),
            reference_non_member_losses=None if ref is None else training.per_sample_loss(ref, xt[non], yt[non]).numpy())
        result["membership"] = mia.as_dict()
        result["membership_remains"] = bool(mia.flagged and verdict.verdict == "HONORED")
    if out is not None:
        with staged_output(out) as stage:
            write_json(stage / "verdict.json", result)
            write_yaml(stage / "config.yaml", {"model": model_dir, "before": before, "reference": reference,
                                              "queries": queries, "alpha": alpha, "beta": beta,
                                              "sequential": sequential, "data": data_name, "seed": seed})
    click.echo(f"{verdict.verdict}: {verdict.reason} (p_low={calibration.p_low:.3f}, q_high={calibration.q_high:.3f}, "
               f"queries {verdict.queries})")
    if result.get("membership_remains"):
        click.echo("warning: backdoor gone, membership remains (the owner's unmarked samples look like members)")


@unlearn.command("bench")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/unlearn-bench"), show_default=True)
@click.option("--data", "data_name", default="mnist", show_default=True)
@click.option("--families", default="lsb", show_default=True, help=f"Comma list of: {', '.join(IMAGE_FAMILIES)}.")
@click.option("--behaviours", default="all", show_default=True,
              help="Comma list of provider behaviours, or 'all' (every centralised behaviour).")
@click.option("--seeds", type=int, default=20, show_default=True, help="Number of trials (seeds 0..N-1 after --seed).")
@click.option("--alpha", type=float, default=1e-3, show_default=True)
@click.option("--beta", type=float, default=1e-3, show_default=True)
@click.option("--queries", type=int, default=30, show_default=True, help="Query budget per verification.")
@click.option("--rate", type=float, default=0.5, show_default=True)
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True,
              help="Provider training epochs (cosine learning-rate decay).")
@click.option("--family-param", "family_params", multiple=True,
              help="Watermark parameter FAMILY.KEY=VALUE (number), repeatable, e.g. wanet.s=1.0.")
@click.option("--resume", is_flag=True, help="Continue an interrupted benchmark (finished trials are skipped).")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
def bench(out: Path, data_name: str, families: str, behaviours: str, seeds: int, alpha: float, beta: float,
          queries: int, rate: float, epochs: int, family_params: tuple[str, ...], resume: bool, seed: int) -> None:
    """Behaviours × watermark families × seeds: verdict rates, queries, costs (one JSONL row per trial)."""
    fams = _csv(families)
    behs = providers.names() if behaviours == "all" else _csv(behaviours)
    for f in fams:
        if f not in IMAGE_FAMILIES:
            raise InputError(f"unknown watermark family {f!r}; choose from: {', '.join(IMAGE_FAMILIES)}")
    for b in behs:
        providers.get(b)
    if seeds < 1:
        raise InputError(f"--seeds must be ≥ 1, got {seeds}")
    from unlearning_verify.verify import check_settings

    check_settings(alpha, beta, queries)
    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    fparams: dict[str, dict] = {}
    for item in family_params:
        name, _, kv = item.partition(".")
        if name not in fams:
            raise InputError(f"--family-param {item!r} names no family of --families; use FAMILY.KEY=VALUE")
        fparams.setdefault(name, {}).update(_key_values([kv], "--family-param"))
    cfg = bench_mod.BenchConfig(families=fams, behaviours=behs, seeds=list(range(seed, seed + seeds)), rate=rate,
                                alpha=alpha, beta=beta, max_queries=queries, family_params=fparams,
                                train=train_config(epochs, TrainConfig.lr, TrainConfig.batch_size))
    started = time.time()
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", {"data": data_name, **cfg.__dict__})
        rows_path = stage / "trials.jsonl"
        done = {(r["family"], r["behaviour"], r["seed"]) for r in read_jsonl(rows_path)}
        total = len(fams) * len(behs) * seeds
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
    for s in summary:
        click.echo(f"{s['family']:>14} {s['behaviour']:>16}: HONORED {s['honored']:.2f}  NOT {s['not_honored']:.2f}  "
                   f"INCONCL {s['inconclusive']:.2f}  queries {s['queries_mean']:.1f}")
    click.echo(f"report: {out / 'report.html'}")


@unlearn.command("bench-fed")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/unlearn-bench-fed"), show_default=True)
@click.option("--data", "data_name", default="mnist", show_default=True)
@click.option("--family", default="blended", show_default=True, type=click.Choice(DIRTY_LABEL_FAMILIES),
              help="Watermark family (LSB is not learned under FedAvg in a few rounds; blended is).")
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--clients", type=int, default=3, show_default=True, help="Clients; the owner is client 0 (1/clients of the data).")
@click.option("--rounds", type=int, default=10, show_default=True)
@click.option("--rate", type=float, default=0.5, show_default=True, help="Fraction of the owner client's samples marked.")
@click.option("--passive-rounds", default="1,3,5", show_default=True, help="Comma list of R for passive exclusion.")
@click.option("--queries", type=int, default=100, show_default=True,
              help="Query budget (FedAvg learns the watermark to p̂ ≈ 0.4–0.6 against the 1/K floor on q: 30 is too few).")
@click.option("--alpha", type=float, default=1e-3, show_default=True)
@click.option("--beta", type=float, default=1e-3, show_default=True)
@click.option("--resume", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
def bench_fed(out: Path, data_name: str, family: str, seeds: int, clients: int, rounds: int, rate: float,
              passive_rounds: str, queries: int, alpha: float, beta: float, resume: bool, seed: int) -> None:
    """Federated variant: the owner is client 0 of a FedAvg federation (harness); no-op, passive, FedEraser."""
    from unlearning_verify import bench_federated as bf
    from unlearning_verify.federated import FederatedConfig

    check_settings(alpha, beta, queries)
    try:
        rs = [int(r) for r in _csv(passive_rounds)]
    except ValueError:
        raise InputError(f"--passive-rounds must be a comma list of integers, got {passive_rounds!r}") from None
    if seeds < 1 or clients < 2 or rounds < 1 or min(rs, default=1) < 1:
        raise InputError("need --seeds ≥ 1, --clients ≥ 2, --rounds ≥ 1 and passive rounds ≥ 1")
    torch.set_num_threads(1)
    x, y, xt, yt = image_data(data_name)
    cfg = bf.FederatedBenchConfig(family=family, seeds=list(range(seed, seed + seeds)), rate=rate, passive_rounds=rs,
                                  alpha=alpha, beta=beta, max_queries=queries,
                                  federation=FederatedConfig(num_clients=clients, rounds=rounds))
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
        report.paragraph(f"{clients} clients, FedAvg for {rounds} rounds; the owner (client 0) marks {rate:.0%} of its "
                         "samples. q from held-out owners' keys with the 1/K floor.")
        report.table(rows, caption="Verdict per seed and behaviour")
        report.save(stage / "report.html")
    for r in read_jsonl(out / "trials.jsonl"):
        click.echo(f"seed {r['seed']} {r['behaviour']:>12}: {r['verdict']} ({r['reason']}), BASR after {r['basr_after']:.3f}")


def bench_report(report: Report, cfg: bench_mod.BenchConfig, summary: list[dict], examples: torch.Tensor) -> None:
    report.paragraph(
        f"Owner {cfg.owner} of {cfg.num_owners} marks {cfg.rate:.0%} of its samples; α = {cfg.alpha:g}, "
        f"β = {cfg.beta:g}, query budget {cfg.max_queries}; {len(cfg.seeds)} seeds. FPR = NOT HONORED on honest "
        "providers, FNR = HONORED on dishonest ones; membership_flag_rate = share of trials where the "
        "membership check on the owner's unmarked samples fired.")
    report.table(summary, caption="Verdict rates per watermark family and provider behaviour")
    wms = {f: build(OwnerKey.generate(cfg.owner, f, 10, seed=cfg.seeds[0]), tuple(examples.shape[1:]))
           for f in cfg.families if f != "hidden_trigger"}
    if wms:
        marked_examples(report, wms, examples[:2], "Example marked images per family (original, triggered, |Δ|×10)")
