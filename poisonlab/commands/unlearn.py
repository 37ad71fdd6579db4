"""``poisonlab unlearn``: mark data, simulate providers, serve them, verify deletion, benchmark.

Each command maps its flags onto the dataclasses of :mod:`unlearning_verify` and calls its entry
points (``verify_deletion``, ``bench.run``, ``bench_federated.run``); loading and run directories live
in ``poisonlab.unlearn_data`` / ``unlearn_models`` / ``unlearn_http`` / ``unlearn_runs``.
Heavy libraries are imported inside the commands (``poisonlab --help`` stays fast).
"""

from __future__ import annotations

from pathlib import Path

import click

from labcore.errors import InputError

DIRTY_LABEL_FAMILIES = ("multi", "lsb", "blended", "wanet", "frequency", "patch", "lowfreq")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def given(**kw: object) -> dict:
    """The options the user gave (None = the dataclass default, which is written only there)."""
    return {k: v for k, v in kw.items() if v is not None}


def train_config(epochs: int | None, lr: float | None, batch_size: int | None):
    from unlearning_verify.training import TrainConfig

    cfg = TrainConfig(**given(epochs=epochs, lr=lr, batch_size=batch_size))
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise InputError(f"need --epochs ≥ 1, --batch-size ≥ 1 and --lr > 0; got {epochs}, {batch_size}, {lr}")
    return cfg


FIT_OPTIONS = [
    click.option("--epochs", type=int, default=None, help="Training epochs, cosine decay."),
    click.option("--lr", type=float, default=None, help="Adam learning rate."),
    click.option("--batch-size", type=int, default=None, help="Mini-batch size."),
]


def options(*opts):
    """Apply several click options at once (shared option groups)."""
    def wrap(f):
        for option in reversed(opts):
            f = option(f)
        return f
    return wrap


@click.group()
def unlearn() -> None:
    """Backdoor watermarks that verify whether an unlearning request was honoured."""


@unlearn.command("mark")
@click.option("--data", "data_name", default="mnist", show_default=True, help="Image dataset (mnist, digits).")
@click.option("--owner", type=int, required=True, help="Owner id (0..owners-1) whose samples are marked.")
@click.option("--owners", type=int, default=10, show_default=True, help="Number of owners (IID split).")
@click.option("--family", default="lsb", show_default=True, type=click.Choice(DIRTY_LABEL_FAMILIES),
              help="Watermark family; multi = several independent markers (lowfreq, blended, patch).")
@click.option("--rate", type=float, default=0.5, show_default=True, help="Fraction of the owner's samples marked.")
@click.option("--key-file", type=click.Path(path_type=Path), required=True,
              help="Owner's key: created (mode 600) if absent, reused if present.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the marked dataset.")
@click.option("--seed", type=int, default=0, show_default=True)
def mark_cmd(data_name: str, owner: int, owners: int, family: str, rate: float, key_file: Path, out: Path,
             seed: int) -> None:
    """Mark owner N's samples with a key-derived watermark; write the dataset and the private key file."""
    from poisonlab.unlearn_runs import mark_run

    meta = {"data": data_name, "owner": owner, "owners": owners, "family": family, "rate": rate, "seed": seed}
    marked, new_key = mark_run(meta, key_file, out)
    click.echo(f"marked {marked} samples of owner {owner} into {out}"
               + (f"; new key written to {key_file} (mode 600)" if new_key else ""))


@unlearn.command("train")
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="Folder written by 'unlearn mark'.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Model folder.")
@options(*FIT_OPTIONS)
@click.option("--seed", type=int, default=0, show_default=True)
def train_cmd(dataset: Path, out: Path, epochs: int, lr: float, batch_size: int, seed: int) -> None:
    """Simulated provider: train the lab's SmallCNN on a (marked) dataset; keeps per-epoch checkpoints."""
    from poisonlab.unlearn_runs import train_run

    train_run(dataset, out, train_config(epochs, lr, batch_size), seed)
    click.echo(f"model written to {out}")


BEHAVIOUR_OPTIONS = [
    click.option("--dataset", type=click.Path(path_type=Path), default=None, help="The training set (from 'mark')."),
    click.option("--owner", type=int, default=None, help="Owner whose samples must be deleted."),
    click.option("--behaviour", default="noop", show_default=True,
                 help="Provider behaviour (retrain, sisa, noop, query_detection, ...); needs --dataset, --owner."),
    click.option("--param", "params", multiple=True, help="Behaviour parameter KEY=VALUE, repeatable."),
]


@unlearn.command("delete")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="The served model.")
@options(*BEHAVIOUR_OPTIONS)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the model served afterwards.")
@options(*FIT_OPTIONS)
@click.option("--seed", type=int, default=0, show_default=True)
def delete_cmd(model_dir: Path, dataset: Path, owner: int, behaviour: str, params: tuple[str, ...], out: Path,
               epochs: int, lr: float, batch_size: int, seed: int) -> None:
    """Simulated provider answering a deletion request with an honest or dishonest behaviour."""
    from poisonlab.unlearn_runs import delete_run, key_values

    delete_run(model_dir, dataset, owner, behaviour, key_values(params, "--param"), out,
               train_config(epochs, lr, batch_size), seed)
    click.echo(f"{behaviour}: served model written to {out}")


@unlearn.command("serve")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="The provider's model.")
@options(*BEHAVIOUR_OPTIONS)
@click.option("--output", type=click.Choice(["label", "probabilities"]), default="probabilities", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@options(*FIT_OPTIONS)
@click.option("--seed", type=int, default=0, show_default=True)
def serve_cmd(model_dir: Path, dataset: Path | None, owner: int | None, behaviour: str, params: tuple[str, ...],
              output: str, port: int, epochs: int, lr: float, batch_size: int, seed: int) -> None:
    """Serve a simulated provider over JSON/HTTP on 127.0.0.1 (POST /predict) until interrupted."""
    from poisonlab.unlearn_runs import key_values, serve_run

    serve_run(model_dir, behaviour, dataset, owner, key_values(params, "--param"), output, port,
              train_config(epochs, lr, batch_size), seed, lambda url: click.echo(f"serving on {url}", nl=True))


@unlearn.command("verify")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None, help="The model served after deletion.")
@click.option("--endpoint", default=None, help="URL of the served model's JSON prediction endpoint (instead of --model).")
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True, help="The owner's key file.")
@click.option("--before", type=click.Path(path_type=Path), required=True,
              help="The model before the deletion request (calibrates p).")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="A model that never saw the owner's data (calibrates q); default: held-out owners' keys.")
@click.option("--queries", type=int, default=None, help="Query budget of the backdoor tests.")
@click.option("--alpha", type=float, default=None, help="False accusation rate.")
@click.option("--beta", type=float, default=None, help="Miss rate.")
@click.option("--sequential", is_flag=True, help="Wald SPRT: stop as soon as a boundary is crossed.")
@click.option("--owner-data", type=click.Path(path_type=Path), default=None,
              help="The marked dataset: adds the membership check on the owner's unmarked samples.")
@click.option("--data", "data_name", default="mnist", show_default=True, help="Where fresh query images come from (test split).")
@click.option("--budget", type=int, default=1000, show_default=True, help="Endpoint: most images sent in all.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Endpoint: seconds per request.")
@click.option("--retries", type=int, default=2, show_default=True, help="Endpoint: retries of a failed request.")
@click.option("--rate-limit", type=float, default=0.0, show_default=True, help="Endpoint: requests per second (0: none).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write verdict.json / config here.")
@click.option("--seed", type=int, default=0, show_default=True)
def verify_cmd(model_dir: Path | None, endpoint: str | None, key_file: Path, before: Path, reference: Path | None,
               queries: int | None, alpha: float | None, beta: float | None, sequential: bool, owner_data: Path | None, data_name: str,
               budget: int, timeout: float, retries: int, rate_limit: float, out: Path | None, seed: int) -> None:
    """Exact binomial tests (or SPRT) + membership: HONORED / NOT HONORED / INCONCLUSIVE."""
    from poisonlab.unlearn_http import ClientConfig
    from poisonlab.unlearn_runs import VerifySources, verify_run
    from unlearning_verify.deletion import VerifyConfig

    if (model_dir is None) == (endpoint is None):
        raise InputError("pass exactly one of --model DIR and --endpoint URL")
    cfg = VerifyConfig(**given(alpha=alpha, beta=beta, max_queries=queries), sequential=sequential, seed=seed)
    sources = VerifySources(model_dir, endpoint, before, reference, owner_data, data_name,
                            ClientConfig(budget, timeout, retries, rate_limit))
    verdict = verify_run(sources, key_file, cfg, out)
    click.echo(f"{verdict.verdict}: {verdict.reason} (decided by {verdict.decided_by}; queries {verdict.queries})")


@unlearn.command("bench")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/unlearn-bench"), show_default=True)
@click.option("--data", "data_name", default="mnist", show_default=True)
@click.option("--families", default="multi", show_default=True, help="Comma list of watermark families.")
@click.option("--behaviours", default="all", show_default=True,
              help="Comma list of provider behaviours, or 'all' (every centralised behaviour).")
@click.option("--seeds", type=int, default=20, show_default=True, help="Number of trials (seeds 0..N-1 after --seed).")
@click.option("--alpha", type=float, default=None, help="False accusation rate.")
@click.option("--beta", type=float, default=None, help="Miss rate.")
@click.option("--queries", type=int, default=60, show_default=True, help="Query budget per verification.")
@click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=None, help="Fraction of the owner's samples marked, in (0, 1].")
@click.option("--epochs", type=int, default=None, help="Provider training epochs, cosine decay.")
@click.option("--family-param", "family_params", multiple=True,
              help="Watermark parameter FAMILY.KEY=VALUE, repeatable, e.g. wanet.s=1.0.")
@click.option("--train-samples", type=int, default=None, help="Use a fixed random subset of the training set.")
@click.option("--owners", type=int, default=None, help="Number of owners (IID split).")
@click.option("--resume", is_flag=True, help="Continue an interrupted benchmark (finished trials are skipped).")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
def bench(out: Path, data_name: str, families: str, behaviours: str, seeds: int, alpha: float | None,
          beta: float | None, queries: int, rate: float | None, epochs: int | None, family_params: tuple[str, ...],
          train_samples: int | None, owners: int | None, resume: bool, seed: int) -> None:
    """Behaviours × watermark families × seeds: FPR/FNR, queries, costs (one JSONL row per trial)."""
    from poisonlab.unlearn_runs import bench_run, family_values
    from unlearning_verify import providers
    from unlearning_verify.bench import BenchConfig

    fams = _csv(families)
    cfg = BenchConfig(families=fams, behaviours=providers.names() if behaviours == "all" else _csv(behaviours),
                      seeds=list(range(seed, seed + seeds)), max_queries=queries, family_params=family_values(family_params, fams),
                      train=train_config(epochs, None, None), train_samples=train_samples,
                      **given(rate=rate, alpha=alpha, beta=beta, num_owners=owners))
    for s in bench_run(cfg, data_name, out, resume):
        click.echo(f"{s['family']:>14} {s['behaviour']:>18}: HONORED {s['honored']:.2f}  NOT {s['not_honored']:.2f}  "
                   f"INCONCL {s['inconclusive']:.2f}  queries {s['queries_mean']:.1f}")
    click.echo(f"report: {out / 'report.html'}")


@unlearn.command("bench-fed")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/unlearn-bench-fed"), show_default=True)
@click.option("--data", "data_name", default="mnist", show_default=True)
@click.option("--family", default="blended", show_default=True, type=click.Choice(DIRTY_LABEL_FAMILIES))
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--clients", type=int, default=None, help="Clients; the owner is client 0.")
@click.option("--rounds", type=int, default=None, help="FedAvg rounds.")
@click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=None, help="Owner client's marked fraction, in (0, 1].")
@click.option("--passive-rounds", default="1,3,5", show_default=True, help="Comma list of R for passive exclusion.")
@click.option("--train-samples", type=int, default=None, help="Use a fixed random subset of the training set.")
@click.option("--queries", type=int, default=None, help="Query budget.")
@click.option("--resume", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
def bench_fed(out: Path, data_name: str, family: str, seeds: int, clients: int | None, rounds: int | None,
              rate: float | None, passive_rounds: str, train_samples: int | None, queries: int | None, resume: bool,
              seed: int) -> None:
    """Federated variant: the owner is client 0 of a FedAvg federation (harness); no-op, retrain, passive, FedEraser."""
    from poisonlab.unlearn_runs import bench_fed_run
    from unlearning_verify.bench_federated import FederatedBenchConfig

    try:
        rs = [int(r) for r in _csv(passive_rounds)]
    except ValueError:
        raise InputError(f"--passive-rounds must be a comma list of integers, got {passive_rounds!r}") from None
    cfg = FederatedBenchConfig(family=family, seeds=list(range(seed, seed + seeds)), passive_rounds=rs,
                               train_samples=train_samples,
                               **given(rate=rate, max_queries=queries, num_clients=clients, rounds=rounds))
    cfg.validate()
    for r in bench_fed_run(cfg, data_name, out, resume):
        click.echo(f"seed {r['seed']} {r['behaviour']:>12}: {r['verdict']} ({r['reason']}), queries {r['queries']}")
