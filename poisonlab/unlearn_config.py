"""The config dataclasses of the ``poisonlab unlearn`` commands (``--config FILE.yaml``).

Each command's flags map onto one of these (``poisonlab.config.config_command``); a run directory's
``config.yaml`` is the dataclass as plain YAML and reruns the command. Defaults are written once: here,
or in the research module's dataclass a field holds (``TrainConfig``, ``VerifyConfig``, ``BenchConfig``,
``FederatedBenchConfig``, ``ClientConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labcore.config import MAX_SEED
from labcore.errors import InputError
from labcore.trackers import check_report_to
from poisonlab.unlearn_http import ClientConfig
from unlearning_verify.bench import BenchConfig
from unlearning_verify.bench_federated import FederatedBenchConfig
from unlearning_verify.deletion import VerifyConfig
from unlearning_verify.training import TrainConfig

DIRTY_LABEL_FAMILIES = ("multi", "lsb", "blended", "wanet", "frequency", "patch", "lowfreq")


def check_train(cfg: TrainConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise InputError(f"need --epochs ≥ 1, --batch-size ≥ 1 and --lr > 0; got {cfg.epochs}, {cfg.batch_size}, {cfg.lr}")


def check_family(family: str) -> None:
    if family not in DIRTY_LABEL_FAMILIES:
        raise InputError(f"unknown watermark family {family!r}; choose one of: {', '.join(DIRTY_LABEL_FAMILIES)}")


@dataclass
class MarkConfig:
    """``unlearn mark``: owner ``owner`` of ``owners`` marks a fraction ``rate`` of its samples."""

    owner: int
    key_file: str
    data: str = "mnist"
    owners: int = 10
    family: str = "lsb"
    rate: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        check_family(self.family)
        if not 0 <= self.owner < self.owners:
            raise InputError(f"--owner must lie in 0..{self.owners - 1}, got {self.owner}")
        if not 0.0 < self.rate <= 1.0:
            raise InputError(f"--rate must lie in (0, 1], got {self.rate}")


@dataclass
class UnlearnTrainConfig:
    """``unlearn train``: the simulated provider trains on a marked dataset folder."""

    dataset: str
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    report_to: str | None = None  # "tensorboard": loss and lr per step under <out>/logs (accelerate trackers)

    def validate(self) -> None:
        check_train(self.train)
        check_report_to(self.report_to)


@dataclass
class DeleteConfig:
    """``unlearn delete``: a provider behaviour answers owner ``owner``'s deletion request."""

    model: str
    dataset: str | None = None
    owner: int | None = None
    behaviour: str = "noop"
    params: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def validate(self) -> None:
        check_train(self.train)


@dataclass
class ServeConfig(DeleteConfig):
    """``unlearn serve``: the model after ``behaviour`` behind JSON/HTTP on 127.0.0.1:``port``."""

    output: str = "probabilities"
    port: int = 8000

    def validate(self) -> None:
        super().validate()
        if self.output not in ("label", "probabilities"):
            raise InputError(f"--output must be label or probabilities, got {self.output!r}")
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must lie in 0..65535 (0 picks a free one), got {self.port}")


@dataclass
class VerifyCommandConfig:
    """``unlearn verify``: the served model (folder or URL), the owner's key and the calibration models."""

    key: str
    before: str
    model: str | None = None
    endpoint: str | None = None
    reference: str | None = None
    owner_data: str | None = None
    data: str = "mnist"
    client: ClientConfig = field(default_factory=ClientConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)

    def validate(self) -> None:
        if (self.model is None) == (self.endpoint is None):
            raise InputError("pass exactly one of --model DIR and --endpoint URL")


@dataclass
class BenchRunConfig:
    """``unlearn bench``: the benchmark of :mod:`unlearning_verify.bench` on the image set ``data``."""

    data: str = "mnist"
    bench: BenchConfig = field(default_factory=BenchConfig)


@dataclass
class FedBenchRunConfig:
    """``unlearn bench-fed``: :mod:`unlearning_verify.bench_federated` on the image set ``data``."""

    data: str = "mnist"
    bench: FederatedBenchConfig = field(default_factory=FederatedBenchConfig)

    def validate(self) -> None:
        check_family(self.bench.family)
        self.bench.validate()


def seed_list(current: list[int], count: int | None, first: int | None) -> list[int]:
    """``--seeds N`` / ``--seed S`` over the config's seed list: N seeds from S (each defaults to the list's)."""
    if count is None and first is None:
        return current
    start = first if first is not None else (current[0] if current else 0)
    n = count if count is not None else len(current)
    if n < 1:
        raise InputError(f"--seeds must be ≥ 1, got {n}")
    if not 0 <= start <= start + n - 1 <= MAX_SEED:
        raise InputError(f"--seed {start} with --seeds {n} leaves 0..{MAX_SEED}; pass a seed from 0 to {MAX_SEED - n + 1}")
    return list(range(start, start + n))
