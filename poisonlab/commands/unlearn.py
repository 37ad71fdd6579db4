"""``poisonlab unlearn``: mark data, simulate providers, serve them, verify deletion, benchmark.

Each command maps its flags (or ``--config FILE.yaml``, e.g. a run's ``config.yaml``) onto its config
dataclass in ``poisonlab.unlearn_config`` and calls the entry points of :mod:`unlearning_verify`
(``verify_deletion``, ``bench.run``, ``bench_federated.run``) through ``poisonlab.unlearn_runs``.
Options default to None: the default is the dataclass's, written once there. Heavy libraries are
imported inside the commands (``poisonlab --help`` stays fast).
"""

from __future__ import annotations

from pathlib import Path

import click

from poisonlab.config import config_command

PATH = click.Path(path_type=Path)
CFG = "poisonlab.unlearn_config:"
TRAIN_PATHS = {"epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size"}


def _csv(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _behaviours(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """A comma list, or 'all' = every centralised behaviour of the registry."""
    if value != "all":
        return _csv(ctx, param, value)
    from unlearning_verify import providers

    return providers.names()


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    from labcore.errors import InputError

    try:
        return None if value is None else [int(v) for v in _csv(ctx, param, value) or []]
    except ValueError:
        raise InputError(f"--{param.name.replace('_', '-')} must be a comma list of integers, got {value!r}") from None


def options(*opts):
    """Apply several click options at once (shared option groups)."""
    def wrap(f):
        for option in reversed(opts):
            f = option(f)
        return f
    return wrap


FIT_OPTIONS = [
    click.option("--epochs", type=int, default=None, help="Training epochs, cosine decay."),
    click.option("--lr", type=float, default=None, help="Adam learning rate."),
    click.option("--batch-size", type=int, default=None, help="Mini-batch size."),
]
BEHAVIOUR_OPTIONS = [
    click.option("--dataset", default=None, help="The training set (from 'mark')."),
    click.option("--owner", type=int, default=None, help="Owner whose samples must be deleted."),
    click.option("--behaviour", default=None, help="Provider behaviour (retrain, sisa, noop, query_detection, ...); "
                                                   "needs --dataset, --owner."),
    click.option("--param", "params", multiple=True, help="Behaviour parameter KEY=VALUE, repeatable."),
]


@click.group()
def unlearn() -> None:
    """Backdoor watermarks that verify whether an unlearning request was honoured."""


@unlearn.command("mark")
@config_command(CFG + "MarkConfig", keep=["out"], required=["owner", "key_file"])
@click.option("--data", default=None, help="Image dataset (mnist, digits).")
@click.option("--owner", type=int, default=None, help="Owner id (0..owners-1) whose samples are marked.")
@click.option("--owners", type=int, default=None, help="Number of owners (IID split).")
@click.option("--family", default=None,
              help="Dirty-label watermark family (multi = several independent markers: lowfreq, blended, patch; lsb, …).")
@click.option("--rate", type=float, default=None, help="Fraction of the owner's samples marked.")
@click.option("--key-file", default=None, help="Owner's key: created (mode 600) if absent, reused if present.")
@click.option("--out", type=PATH, required=True, help="Folder for the marked dataset.")
@click.option("--seed", type=int, default=None)
def mark_cmd(cfg, out: Path) -> None:
    """Mark owner N's samples with a key-derived watermark; write the dataset and the private key file."""
    from poisonlab.unlearn_runs import mark_run

    marked, new_key = mark_run(cfg, out)
    click.echo(f"marked {marked} samples of owner {cfg.owner} into {out}"
               + (f"; new key written to {cfg.key_file} (mode 600)" if new_key else ""))


@unlearn.command("train")
@config_command(CFG + "UnlearnTrainConfig", keep=["out"], paths=TRAIN_PATHS, required=["dataset"])
@click.option("--dataset", default=None, help="Folder written by 'unlearn mark'.")
@click.option("--out", type=PATH, required=True, help="Model folder.")
@options(*FIT_OPTIONS)
@click.option("--report-to", default=None, help="Log loss and lr per step: tensorboard (under OUT/logs).")
@click.option("--seed", type=int, default=None)
def train_cmd(cfg, out: Path) -> None:
    """Simulated provider: train the lab's SmallCNN on a (marked) dataset; keeps per-epoch checkpoints."""
    from poisonlab.unlearn_runs import train_run

    train_run(cfg, out)
    click.echo(f"model written to {out}")


@unlearn.command("delete")
@config_command(CFG + "DeleteConfig", keep=["out", "params"], paths=TRAIN_PATHS, required=["model"])
@click.option("--model", default=None, help="The served model.")
@options(*BEHAVIOUR_OPTIONS)
@click.option("--out", type=PATH, required=True, help="Folder for the model served afterwards.")
@options(*FIT_OPTIONS)
@click.option("--seed", type=int, default=None)
def delete_cmd(cfg, out: Path, params: tuple[str, ...]) -> None:
    """Simulated provider answering a deletion request with an honest or dishonest behaviour."""
    from poisonlab.unlearn_runs import delete_run, key_values

    cfg.params.update(key_values(params, "--param"))
    delete_run(cfg, out)
    click.echo(f"{cfg.behaviour}: served model written to {out}")


@unlearn.command("serve")
@config_command(CFG + "ServeConfig", keep=["params"], paths=TRAIN_PATHS, required=["model"])
@click.option("--model", default=None, help="The provider's model.")
@options(*BEHAVIOUR_OPTIONS)
@click.option("--output", type=click.Choice(["label", "probabilities"]), default=None)
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (0 picks a free one).")
@options(*FIT_OPTIONS)
@click.option("--seed", type=int, default=None)
def serve_cmd(cfg, params: tuple[str, ...]) -> None:
    """Serve a simulated provider over JSON/HTTP on 127.0.0.1 (POST /predict) until interrupted."""
    from poisonlab.unlearn_runs import key_values, serve_run

    cfg.params.update(key_values(params, "--param"))
    serve_run(cfg, lambda url: click.echo(f"serving on {url}", nl=True))


VERIFY_PATHS = {"queries": "verify.max_queries", "alpha": "verify.alpha", "beta": "verify.beta",
                "sequential": "verify.sequential", "reallocate": "verify.reallocate", "seed": "verify.seed",
                "budget": "client.budget", "timeout": "client.timeout", "retries": "client.retries", "rate_limit": "client.rate_limit"}


@unlearn.command("verify")
@config_command(CFG + "VerifyCommandConfig", keep=["out"], paths=VERIFY_PATHS, required=["key", "before"])
@click.option("--model", default=None, help="The model served after deletion.")
@click.option("--endpoint", default=None, help="URL of the served model, as 'unlearn serve' prints it (POST /predict; instead of --model).")
@click.option("--key", default=None, help="The owner's key file.")
@click.option("--before", default=None, help="The model before the deletion request (calibrates p).")
@click.option("--reference", default=None,
              help="A model that never saw the owner's data (calibrates q); default: held-out owners' keys.")
@click.option("--queries", type=int, default=None, help="Query budget of the backdoor tests.")
@click.option("--alpha", type=float, default=None, help="False accusation rate.")
@click.option("--beta", type=float, default=None, help="Miss rate.")
@click.option("--sequential/--fixed", default=None, help="Wald SPRT: stop as soon as a boundary is crossed.")
@click.option("--reallocate/--no-reallocate", default=None,
              help="Markers not learned before deletion give their queries (and α share) to the learned ones.")
@click.option("--owner-data", default=None,
              help="The marked dataset: adds the membership check on the owner's unmarked samples.")
@click.option("--data", default=None, help="Where fresh query images come from (test split).")
@click.option("--budget", type=int, default=None, help="Endpoint: most images sent in all.")
@click.option("--timeout", type=float, default=None, help="Endpoint: seconds per request.")
@click.option("--retries", type=int, default=None, help="Endpoint: retries of a failed request.")
@click.option("--rate-limit", type=float, default=None, help="Endpoint: requests per second (0: none).")
@click.option("--out", type=PATH, default=None, help="Write verdict.json / config here.")
@click.option("--seed", type=int, default=None)
def verify_cmd(cfg, out: Path | None) -> None:
    """Exact binomial tests (or SPRT) + membership: HONORED / NOT HONORED / INCONCLUSIVE."""
    from poisonlab.unlearn_runs import verify_run

    verdict = verify_run(cfg, out)
    click.echo(f"{verdict.verdict}: {verdict.reason} (decided by {verdict.decided_by}; queries {verdict.queries})")


@unlearn.command("bench")
@config_command(CFG + "BenchRunConfig", keep=["out", "resume", "seeds", "seed", "family_params"], paths={
    "families": "bench.families", "behaviours": "bench.behaviours", "alpha": "bench.alpha", "beta": "bench.beta",
    "queries": "bench.max_queries", "rate": "bench.rate", "epochs": "bench.train.epochs",
    "train_samples": "bench.train_samples", "owners": "bench.num_owners", "reallocate": "bench.reallocate"})
@click.option("--out", type=PATH, default=Path("runs/unlearn-bench"), show_default=True)
@click.option("--data", default=None)
@click.option("--families", default=None, callback=_csv, help="Comma list of watermark families.")
@click.option("--behaviours", default=None, callback=_behaviours,
              help="Comma list of provider behaviours, or 'all' (every centralised behaviour).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Number of trials: seeds --seed … --seed+N−1 (default: the config's seed list).")
@click.option("--alpha", type=float, default=None, help="False accusation rate.")
@click.option("--beta", type=float, default=None, help="Miss rate.")
@click.option("--queries", type=int, default=None, help="Backdoor query budget per verification.")
@click.option("--reallocate/--no-reallocate", default=None, help="As 'unlearn verify --reallocate'.")
@click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=None, help="Fraction of the owner's samples marked, in (0, 1].")
@click.option("--epochs", type=int, default=None, help="Provider training epochs, cosine decay.")
@click.option("--family-param", "family_params", multiple=True,
              help="Watermark parameter FAMILY.KEY=VALUE, repeatable, e.g. wanet.s=1.0.")
@click.option("--train-samples", type=int, default=None, help="Use a fixed random subset of the training set.")
@click.option("--owners", type=int, default=None, help="Number of owners (IID split).")
@click.option("--resume", is_flag=True, help="Continue an interrupted benchmark (finished trials are skipped).")
@click.option("--seed", type=int, default=None, help="First seed (default: the config's first seed).")
def bench(cfg, out: Path, resume: bool, seeds: int | None, seed: int | None, family_params: tuple[str, ...]) -> None:
    """Behaviours × watermark families × seeds: FPR/FNR, queries, costs (one JSONL row per trial)."""
    from poisonlab.unlearn_config import seed_list
    from poisonlab.unlearn_runs import bench_run, family_values

    cfg.bench.seeds = seed_list(cfg.bench.seeds, seeds, seed)
    for family, kv in family_values(family_params, cfg.bench.families).items():
        cfg.bench.family_params.setdefault(family, {}).update(kv)
    for s in bench_run(cfg, out, resume):
        click.echo(f"{s['family']:>14} {s['behaviour']:>18}: HONORED {s['honored']:.2f}  NOT {s['not_honored']:.2f}  "
                   f"INCONCL {s['inconclusive']:.2f}  queries {s['queries_mean']:.1f}")
    click.echo(f"report: {out / 'report.html'}")


@unlearn.command("bench-fed")
@config_command(CFG + "FedBenchRunConfig", keep=["out", "resume", "seeds", "seed"], paths={
    "family": "bench.family", "clients": "bench.num_clients", "rounds": "bench.rounds", "rate": "bench.rate",
    "passive_rounds": "bench.passive_rounds", "train_samples": "bench.train_samples", "queries": "bench.max_queries"})
@click.option("--out", type=PATH, default=Path("runs/unlearn-bench-fed"), show_default=True)
@click.option("--data", default=None)
@click.option("--family", default=None, help="Dirty-label watermark family the owner client marks with.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Number of seeds: --seed … --seed+N−1 (default: the config's seed list).")
@click.option("--clients", type=int, default=None, help="Clients; the owner is client 0.")
@click.option("--rounds", type=int, default=None, help="FedAvg rounds.")
@click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=None, help="Owner client's marked fraction, in (0, 1].")
@click.option("--passive-rounds", default=None, callback=_ints, help="Comma list of R for passive exclusion.")
@click.option("--train-samples", type=int, default=None, help="Use a fixed random subset of the training set.")
@click.option("--queries", type=int, default=None, help="Query budget.")
@click.option("--resume", is_flag=True)
@click.option("--seed", type=int, default=None, help="First seed (default: the config's first seed).")
def bench_fed(cfg, out: Path, resume: bool, seeds: int | None, seed: int | None) -> None:
    """Federated variant: the owner is client 0 of a FedAvg federation (harness); no-op, retrain, passive, FedEraser."""
    from poisonlab.unlearn_config import seed_list
    from poisonlab.unlearn_runs import bench_fed_run

    cfg.bench.seeds = seed_list(cfg.bench.seeds, seeds, seed)
    cfg.validate()
    for r in bench_fed_run(cfg, out, resume):
        click.echo(f"seed {r['seed']} {r['behaviour']:>12}: {r['verdict']} ({r['reason']}), queries {r['queries']}")
