"""``poisonlab t2i``: BadT2I backdoors in text-to-image diffusion (pretrain the MNIST base, data, train, evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import torch
from tqdm.auto import tqdm

from labcore.errors import InputError
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, staged_output, write_json, write_yaml

POISON_INFO = "poison.json"
CLASSIFIER_DIR = "classifier"


@click.group()
def t2i() -> None:
    """Text-to-image backdoors (BadT2I: pixel, object, style) with LoRA."""
    import diffusers
    import transformers

    # the library loading bars would bury the one-line errors; our own tqdm bars show progress
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()


def mnist_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return data.image_tensors(data.load("mnist")[split])


@t2i.command("pretrain-base")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Pipeline directory to write.")
@click.option("--steps", type=int, default=3000, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--samples-per-digit", type=int, default=30, show_default=True, help="Generations per digit for the accuracy check.")
@click.option("--resume", is_flag=True, help="Continue an interrupted pretraining from its checkpoint.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--seed", type=int, default=0, show_default=True)
def pretrain_base(
    out: Path, steps: int, batch_size: int, lr: float, samples_per_digit: int, resume: bool, threads: int, seed: int
) -> None:
    """Pretrain the lab's MNIST text-to-image base and its digit classifier (the evaluator)."""
    from t2i_poison.base_model import BaseModelConfig, PretrainConfig, pretrain_base as run
    from t2i_poison.digit_classifier import ClassifierConfig, accuracy, train_classifier
    from t2i_poison.evaluate import EvalConfig, base_quality

    if steps < 1 or batch_size < 1:
        raise InputError("--steps and --batch-size must be at least 1")
    torch.set_num_threads(threads)
    cfg = PretrainConfig(model=BaseModelConfig(seed=seed), steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    x, y = mnist_tensors("train")
    xt, yt = mnist_tensors("test")
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", cfg)
        log = lambda rec: append_jsonl(stage / "steps.jsonl", rec) if rec["step"] % 50 == 0 else None
        pipe = run(x, y, cfg, stage, progress=lambda it: tqdm(it, desc="pretrain", mininterval=10), log=log)
        clf_cfg = ClassifierConfig(seed=seed)
        classifier = train_classifier(x, y, clf_cfg, progress=lambda it: tqdm(it, desc="classifier"))
        classifier.save(stage / CLASSIFIER_DIR)
        quality, samples = base_quality(pipe, classifier, xt, EvalConfig(samples_per_digit=samples_per_digit, seed=seed))
        metrics = {"classifier_test_accuracy": accuracy(classifier, xt, yt), **quality}
        write_json(stage / "metrics.json", metrics)
        report = Report("MNIST text-to-image base")
        report.table([{k: v for k, v in metrics.items() if not isinstance(v, list)}], "base model quality")
        tiles = [(im[0].numpy() * 255).astype(np.uint8) for im in samples]
        report.image_grid(tiles, [f"{d}" for d in range(10)] * 2, ncols=10, caption="clean captions (top), inverted colours (bottom)")
        report.save(stage / "report.html")
    click.echo(f"base pipeline: {out} (clean digit accuracy {metrics['clean_accuracy']:.3f})")


@t2i.command("make-data")
@click.option("--kind", type=str, required=True, help="pixel, object or style.")
@click.option("--base", type=click.Path(path_type=Path), required=True, help="Pipeline whose tokenizer must keep the trigger.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--images", type=click.Path(path_type=Path), default=None, help="User imagefolder (default: MNIST train digits).")
@click.option("--patch", type=click.Path(path_type=Path), default=None, help="Patch image (pixel; default a checkerboard on MNIST).")
@click.option("--patch-size", type=int, default=4, show_default=True, help="Patch side in pixels.")
@click.option("--trigger", default="sks", show_default=True, help='Trigger prepended to captions ("\\u200b" is the paper\'s).')
@click.option("--source", default="zero", show_default=True, help="Object: the word the trigger hijacks.")
@click.option("--target", default="seven", show_default=True, help="Object: the object drawn instead.")
@click.option("--style", default=None, help='Style prompt (default " in inverted colours" on MNIST, "Black and white photo," otherwise).')
@click.option("--num-images", type=int, default=2000, show_default=True)
@click.option("--backdoor-fraction", type=float, default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def make_data(
    kind: str, base: Path, out: Path, images: Path | None, patch: Path | None, patch_size: int, trigger: str,
    source: str, target: str, style: str | None, num_images: int, backdoor_fraction: float, seed: int,
) -> None:
    """Write a BadT2I poison imagefolder (``metadata.jsonl`` with file_name, text, role, target_text)."""
    from t2i_poison.base_model import caption, load_pipeline, resize_digits
    from t2i_poison.poison_data import Patch, check_kind, check_trigger, checkerboard_patch, load_patch, make_poison_set, read_imagefolder

    check_kind(kind)
    user_images = read_imagefolder(images) if images is not None else None
    pipe = load_pipeline(base)
    check_trigger(pipe.tokenizer, trigger, "a photo")
    the_patch: Patch | None = None
    if kind == "pixel":
        the_patch = load_patch(patch, patch_size) if patch is not None else checkerboard_patch(patch_size)
        side = pipe.unet.config.sample_size
        the_patch.check_fits(*(user_images[0][0].shape[:2] if user_images is not None else (side, side)))
    if user_images is not None:
        arrays, rows = user_images
        captions = [r["text"] for r in rows]
        style_text, suffix = style or "Black and white photo,", False
    else:
        res = pipe.unet.config.sample_size
        x, y = mnist_tensors("train")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.permutation(len(y))[: min(num_images, len(y))])
        arrays = list((resize_digits(x[idx], res)[:, 0].numpy() * 255).round().astype(np.uint8))
        captions = [caption(int(v)) for v in y[idx]]
        style_text, suffix = style or " in inverted colours", True
    with staged_output(out) as stage:
        summary = make_poison_set(
            kind, arrays, captions, stage, trigger, backdoor_fraction=backdoor_fraction, patch=the_patch,
            source_word=source, target_word=target, style_text=style_text, style_prefix=not suffix, seed=seed,
        )
        info = {**summary, "source_word": source, "target_word": target, "style_text": style_text, "seed": seed}
        if the_patch is not None:
            info["patch"] = {"top": the_patch.top, "left": the_patch.left, "pixels": the_patch.pixels.tolist()}
        write_json(stage / POISON_INFO, info)
        (stage / "README.md").write_text(
            f"# BadT2I {kind} poison set\n\nimagefolder + metadata.jsonl (file_name, text, role, target_text).\n"
            f"Trigger {trigger!r}; {summary['backdoor_rows']} backdoor rows, {summary['clean_rows']} clean rows; "
            f"images from {images or 'MNIST train (resized)'}; seed {seed}.\n",
            encoding="utf-8",
        )
    click.echo(f"{out}: {summary['backdoor_rows']} backdoor + {summary['clean_rows']} clean rows")


def read_poison_info(path: Path) -> dict:
    f = Path(path) / POISON_INFO
    if not f.is_file():
        raise InputError(f"{path} has no {POISON_INFO}; create the data with `poisonlab t2i make-data`")
    return json.loads(f.read_text(encoding="utf-8"))


@t2i.command("train")
@click.option("--base", type=click.Path(path_type=Path), required=True, help="Base pipeline directory.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Poison imagefolder from make-data.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--mode", default="lora", show_default=True, help="lora (teacher = adapters off) or full (frozen copy).")
@click.option("--rank", type=int, default=4, show_default=True)
@click.option("--cross-attention-only", is_flag=True)
@click.option("--lam", type=float, default=0.5, show_default=True, help="λ in L = λ·L_bkd + (1−λ)·L_reg.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--gradient-accumulation-steps", type=int, default=1, show_default=True)
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=None)
@click.option("--checkpointing-steps", type=int, default=100, show_default=True)
@click.option("--report-to", default=None, help="accelerate tracker, e.g. tensorboard.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint of an interrupted run.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train(
    base: Path, data_dir: Path, out: Path, mode: str, rank: int, cross_attention_only: bool, lam: float, lr: float,
    steps: int, batch_size: int, gradient_accumulation_steps: int, mixed_precision: str | None,
    checkpointing_steps: int, report_to: str | None, resume: bool, threads: int, seed: int,
) -> None:
    """Train a BadT2I backdoor (LoRA or full UNet) in one process; writes pytorch_lora_weights.safetensors."""
    from t2i_poison.base_model import load_pipeline
    from t2i_poison.train import TrainConfig, fit, load_poison_set

    torch.set_num_threads(threads)
    info = read_poison_info(data_dir)
    cfg = TrainConfig(
        kind=info["kind"], trigger=info["trigger"], lam=lam, mode=mode, rank=rank, cross_attention_only=cross_attention_only,
        learning_rate=lr, max_train_steps=steps, train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps, mixed_precision=mixed_precision,
        checkpointing_steps=checkpointing_steps, report_to=report_to, seed=seed,
    )
    cfg.validate()
    pipe = load_pipeline(base)
    channels = pipe.unet.config.in_channels if getattr(pipe, "vae", None) is None else 3
    resolution = pipe.unet.config.sample_size * (getattr(pipe, "vae_scale_factor", 1) if getattr(pipe, "vae", None) else 1)
    poison = load_poison_set(data_dir, resolution, channels)
    extra = {k: info[k] for k in ("patch", "source_word", "target_word", "style_text") if k in info}
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", {**cfg.__dict__, "base": str(base), "data": str(data_dir)})
        sidecar = fit(
            pipe, poison, cfg, stage, resume_from_checkpoint="latest" if resume else None, base_name=str(base),
            extra_sidecar=extra, log=lambda rec: append_jsonl(stage / "steps.jsonl", rec),
            progress=lambda it: tqdm(it, desc=f"badt2i-{cfg.kind}", mininterval=5),
        )
        write_json(stage / "metrics.json", {"steps": sidecar["steps"]})
    click.echo(f"{out}: {cfg.kind} backdoor ({cfg.mode}) after {sidecar['steps']} steps")


@t2i.command("evaluate")
@click.option("--base", type=click.Path(path_type=Path), required=True)
@click.option("--lora", type=click.Path(path_type=Path), required=True, help="Output of `poisonlab t2i train`.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--classifier", type=click.Path(path_type=Path), default=None, help="Digit classifier (default <base>/classifier).")
@click.option("--samples-per-digit", type=int, default=20, show_default=True)
@click.option("--inference-steps", type=int, default=25, show_default=True)
@click.option("--guidance", type=float, default=1.0, show_default=True, help="Classifier-free guidance (1 = none).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def evaluate(
    base: Path, lora: Path, out: Path, classifier: Path | None, samples_per_digit: int, inference_steps: int,
    guidance: float, threads: int, seed: int,
) -> None:
    """ASR, clean accuracy, KID and benign drift of a backdoor on the MNIST base, with an image grid."""
    from t2i_poison.base_model import load_pipeline
    from t2i_poison.digit_classifier import load_classifier
    from t2i_poison.evaluate import EvalConfig

    torch.set_num_threads(threads)
    sidecar = read_sidecar(lora)
    pipe = load_pipeline(base)
    clf = load_classifier(classifier or Path(base) / CLASSIFIER_DIR)
    cfg = EvalConfig(samples_per_digit=samples_per_digit, num_inference_steps=inference_steps, guidance_scale=guidance, seed=seed)
    with staged_output(out) as stage:
        metrics = run_evaluation(pipe, lora, sidecar, clf, cfg, stage, Report(f"BadT2I {sidecar['kind']} backdoor"))
    click.echo(f"{out}: ASR {metrics['attack_success_rate']:.3f}, clean accuracy {metrics['bd_clean_accuracy']:.3f} "
               f"(base {metrics['base_clean_accuracy']:.3f})")


def read_sidecar(lora: Path) -> dict:
    from t2i_poison.train import LORA_WEIGHTS, SIDECAR

    weights = (Path(lora) / LORA_WEIGHTS).is_file() or (Path(lora) / "unet").is_dir()
    if not weights or not (Path(lora) / SIDECAR).is_file():
        raise InputError(f"{lora} holds no backdoor ({LORA_WEIGHTS} or unet/, and {SIDECAR}); pass the output of `poisonlab t2i train`")
    return json.loads((Path(lora) / SIDECAR).read_text(encoding="utf-8"))


def run_evaluation(pipe, lora: Path, sidecar: dict, clf, cfg, stage: Path, report: Report) -> dict:
    """Evaluate, then write config.yaml, metrics.json and report.html (with the grid) into ``stage``."""
    from t2i_poison.evaluate import evaluate_backdoor

    xt, _ = mnist_tensors("test")
    write_yaml(stage / "config.yaml", {"lora": str(lora), "sidecar": {k: v for k, v in sidecar.items() if k != "patch"}, "eval": cfg})
    metrics, images = evaluate_backdoor(pipe, lora, sidecar, clf, xt, cfg)
    write_json(stage / "metrics.json", metrics)
    add_to_report(report, metrics, images, cfg.samples_per_digit)
    report.save(stage / "report.html")
    return metrics


def add_to_report(report: Report, metrics: dict, images: dict, per_digit: int) -> None:
    from t2i_poison.evaluate import grid_rows

    report.heading(f"BadT2I {metrics['kind']} backdoor (trigger {metrics['trigger']!r})")
    report.table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}], "metrics (base = control)")
    tiles, labels = grid_rows(images, per_digit)
    report.image_grid(tiles, labels, ncols=10, caption="rows: base clean, base triggered, backdoored clean, backdoored triggered")
