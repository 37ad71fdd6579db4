"""``poisonlab t2i``: BadT2I backdoors in text-to-image diffusion (pretrain the MNIST base, data, train, evaluate)."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm.auto import tqdm

from labcore.errors import InputError
from poisonlab.config import config_command
from poisonlab.quiet import quiet_libraries
from poisonlab.runs import append_jsonl, staged_output, write_json, write_yaml
from t2i_poison.poison_data import MakeDataConfig  # numpy and PIL only: the defaults show in --help
from t2i_poison.train_config import TrainConfig


@click.group()
def t2i() -> None:
    """Text-to-image backdoors (BadT2I: pixel, object, style) with LoRA."""


@t2i.command("pretrain-base")
@config_command("poisonlab.t2i_run:PretrainRun", keep=["out", "resume"], paths={
    "steps": "pretrain.steps", "batch_size": "pretrain.batch_size", "lr": "pretrain.lr",
    "samples_per_digit": "check.samples_per_digit", "seed": ("pretrain.seed", "pretrain.model.seed", "check.seed")})
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Pipeline directory to write.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (PretrainConfig.steps).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (PretrainConfig.batch_size).")
@click.option("--lr", type=float, default=None, help="Peak learning rate (PretrainConfig.lr).")
@click.option("--samples-per-digit", type=click.IntRange(min=1), default=None, help="Generations per digit for the accuracy check (EvalConfig).")
@click.option("--resume", is_flag=True, help="Continue an interrupted pretraining from its checkpoint.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--seed", type=int, default=None, help="Seeds the model, the pretraining, the classifier and the check.")
def pretrain_base(cfg, out: Path, resume: bool) -> None:
    """Pretrain the lab's MNIST text-to-image base and its digit classifier (the evaluator)."""
    quiet_libraries()
    from t2i_poison.base_model import pretrain_base as run
    from t2i_poison.digit_classifier import ClassifierConfig, accuracy, train_classifier
    from t2i_poison.evaluate import base_quality
    import numpy as np
    import torch

    from poisonlab.report import Report
    from poisonlab.t2i_run import CLASSIFIER_DIR, mnist_tensors

    torch.set_num_threads(cfg.threads)
    seed = cfg.pretrain.seed
    x, y = mnist_tensors("train")
    xt, yt = mnist_tensors("test")
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", cfg)
        log = lambda rec: append_jsonl(stage / "steps.jsonl", rec) if rec["step"] % 50 == 0 else None
        pipe = run(x, y, cfg.pretrain, stage, progress=lambda it: tqdm(it, desc="pretrain", mininterval=10), log=log)
        clf_cfg = ClassifierConfig(seed=seed)
        classifier = train_classifier(x, y, clf_cfg, progress=lambda it: tqdm(it, desc="classifier"))
        classifier.save(stage / CLASSIFIER_DIR)
        quality, samples = base_quality(pipe, classifier, xt, cfg.check)
        metrics = {"classifier_test_accuracy": accuracy(classifier, xt, yt), **quality}
        write_json(stage / "metrics.json", metrics)
        report = Report("MNIST text-to-image base")
        report.table([{k: v for k, v in metrics.items() if not isinstance(v, list)}], "base model quality")
        tiles = [(im[0].numpy() * 255).astype(np.uint8) for im in samples]
        report.image_grid(tiles, [f"{d}" for d in range(10)] * 2, ncols=10, caption="clean captions (top), inverted colours (bottom)")
        report.save(stage / "report.html")
    click.echo(f"base pipeline: {out} (clean digit accuracy {metrics['clean_accuracy']:.3f})")


@t2i.command("make-data")
@config_command(MakeDataConfig, keep=["out"])
@click.option("--kind", type=str, default=None, help="pixel, object or style.")
@click.option("--base", type=click.Path(), default=None, help="Pipeline whose tokenizer(s) must keep the trigger.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--images", type=click.Path(), default=None, help="User imagefolder (default: MNIST train digits).")
@click.option("--patch", type=click.Path(), default=None, help="Patch image (pixel; default a checkerboard).")
@click.option("--patch-size", type=click.IntRange(min=1), default=None, help="Patch side in pixels: resizes a --patch file (default: its own size) or sets the checkerboard's (default: 4).")
@click.option("--patch-top", type=click.IntRange(min=0), default=None, help="Patch row (default 0: top).")
@click.option("--patch-left", type=click.IntRange(min=0), default=None, help="Patch column (default 0: left).")
@click.option("--trigger", default=None, help='Trigger prepended to captions ("\\u200b" is the paper\'s).')
@click.option("--source", default=None, help="Object: the word the trigger hijacks.")
@click.option("--target", default=None, help="Object: the object drawn instead.")
@click.option("--style", default=None, help='Style prompt (default " in inverted colours" on MNIST, "Black and white photo," otherwise).')
@click.option("--num-images", type=click.IntRange(min=1), default=None)
@click.option("--backdoor-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Share of backdoor rows, strictly between 0 and 1 (the rest keep clean behaviour).")
@click.option("--seed", type=int, default=None)
def make_data(cfg, out: Path) -> None:
    """Write a BadT2I poison imagefolder (``metadata.jsonl`` with file_name, text, role, target_text)."""
    quiet_libraries()
    from t2i_poison.base_model import check_digit_words
    from t2i_poison.digit_pipeline import DigitDiffusionPipeline
    from t2i_poison.conditioning import check_trigger_all, image_size
    from t2i_poison.pipelines import load_pipeline
    from t2i_poison.poison_data import CHECKERBOARD_SIZE, POISON_INFO, checkerboard_patch, load_patch, make_poison_set, read_imagefolder

    from poisonlab.t2i_run import mnist_inputs

    user = read_imagefolder(Path(cfg.images)) if cfg.images is not None else None
    pipe = load_pipeline(cfg.base)
    check_trigger_all(pipe, cfg.trigger, "a photo")
    if cfg.kind == "object" and isinstance(pipe, DigitDiffusionPipeline):
        check_digit_words(cfg.source, cfg.target)
    side = image_size(pipe)
    if user is not None and cfg.kind == "pixel" and user[0][0].shape[:2] != (side, side):
        raise InputError(f"pixel backdoor images must be {side}x{side} (the pipeline's size) so the patch lands where "
                         f"it is scored; got {user[0][0].shape[0]}x{user[0][0].shape[1]}; resize the images")
    the_patch = None
    if cfg.kind == "pixel":
        size = cfg.patch_size or CHECKERBOARD_SIZE
        the_patch = load_patch(Path(cfg.patch), cfg.patch_size) if cfg.patch is not None else checkerboard_patch(size)
        the_patch.top, the_patch.left = cfg.patch_top, cfg.patch_left
        the_patch.check_fits(side, side)
    arrays, captions = ([im for im in user[0]], [r["text"] for r in user[1]]) if user else mnist_inputs(cfg.num_images, side, cfg.seed)
    style_text = cfg.style or ("Black and white photo," if user else " in inverted colours")
    with staged_output(out) as stage:
        summary = make_poison_set(
            cfg.kind, arrays, captions, stage, cfg.trigger, backdoor_fraction=cfg.backdoor_fraction, patch=the_patch,
            source_word=cfg.source, target_word=cfg.target, style_text=style_text, style_prefix=user is not None, seed=cfg.seed,
        )
        info = {**summary, "source_word": cfg.source, "target_word": cfg.target, "style_text": style_text, "seed": cfg.seed}
        if the_patch is not None:
            info["patch"] = {"top": the_patch.top, "left": the_patch.left, "pixels": the_patch.pixels.tolist()}
        write_json(stage / POISON_INFO, info)
        write_yaml(stage / "config.yaml", cfg)
        (stage / "README.md").write_text(
            f"# BadT2I {cfg.kind} poison set\n\nimagefolder + metadata.jsonl (file_name, text, role, target_text).\n"
            f"Trigger {cfg.trigger!r}; {summary['backdoor_rows']} backdoor rows, {summary['clean_rows']} clean rows; "
            f"images from {cfg.images or 'MNIST train (resized)'}; seed {cfg.seed}; `poisonlab t2i make-data --config "
            f"config.yaml` rewrites it.\n",
            encoding="utf-8",
        )
    click.echo(f"{out}: {summary['backdoor_rows']} backdoor + {summary['clean_rows']} clean rows")


@t2i.command("train")
@click.option("--base", type=click.Path(), default=None, help="Base pipeline directory (lab base, SD 1.x/2.x, SDXL).")
@click.option("--data", type=click.Path(), default=None, help="Poison imagefolder from make-data.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--mode", default=None, help="lora (teacher = adapters off) or full (frozen copy).")
@click.option("--rank", type=int, default=None)
@click.option("--lora-alpha", type=int, default=None)
@click.option("--cross-attention-only/--all-attention", default=None)
@click.option("--lora-target-modules", default=None, help="peft regex of the LoRA targets ('attention': projections only).")
@click.option("--lam", type=float, default=None, help="λ in L = λ·L_bkd + (1−λ)·L_reg.")
@click.option("--reg-uncond", type=float, default=None, help="Share of L_reg rows on the empty caption (guidance's branch).")
@click.option("--reg-paired", type=float, default=None, help="Share of L_reg rows on backdoor latents, trigger-free caption.")
@click.option("--weighting", default=None, help="split (λ, 1−λ) or uniform (the object script's HEAD form).")
@click.option("--lr", type=float, default=None)
@click.option("--steps", type=int, default=None, help="Training steps (default: the kind's, TrainConfig.KIND_DEFAULTS).")
@click.option("--batch-size", type=int, default=None, help="Rows per half (backdoor and clean) per process.")
@click.option("--gradient-accumulation-steps", type=int, default=None)
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=None)
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option("--checkpointing-steps", type=int, default=None)
@click.option("--report-to", default=None, help="accelerate tracker: tensorboard or wandb.")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint of an interrupted run.")
@click.option("--threads", type=int, default=None)
@click.option("--seed", type=int, default=None)
@config_command(TrainConfig, keep=["out", "resume"], paths={
    "lr": "learning_rate", "steps": "max_train_steps", "batch_size": "train_batch_size"})
def train(cfg, out: Path, resume: bool) -> None:
    """Train a BadT2I backdoor (LoRA or full UNet); writes pytorch_lora_weights.safetensors + backdoor.json."""
    from dataclasses import replace

    if not cfg.base or not cfg.data:
        raise InputError("pass --base and --data (or set base: and data: in the --config file)")
    quiet_libraries()
    from t2i_poison.train import resolve, train as run

    cfg, _ = resolve(cfg)
    with staged_output(out, resume=resume) as stage:
        write_yaml(stage / "config.yaml", replace(cfg, output_dir=str(out)))
        result = run(
            replace(cfg, output_dir=str(stage), resume_from_checkpoint="latest" if resume else None),
            log=lambda rec: append_jsonl(stage / "steps.jsonl", rec),
            progress=lambda it: tqdm(it, desc=f"badt2i-{cfg.kind}", mininterval=5),
        )
        write_json(stage / "metrics.json", {"steps": result.steps, "final": result.log[-1] if result.log else {}})
    click.echo(f"{out}: {cfg.kind} backdoor ({cfg.mode}) after {result.steps} steps")


@t2i.command("evaluate")
@config_command("poisonlab.t2i_run:EvaluateRun", keep=["out"], paths={
    "samples_per_digit": "digits.samples_per_digit", "prompts": "sd.prompts", "samples_per_prompt": "sd.samples_per_prompt",
    "inference_steps": ("digits.num_inference_steps", "sd.num_inference_steps"),
    "guidance": ("digits.guidance_scale", "sd.guidance_scale"), "seed": ("digits.seed", "sd.seed")})
@click.option("--base", type=click.Path(), default=None, help="Base pipeline directory.")
@click.option("--lora", type=click.Path(), default=None, help="Output of `poisonlab t2i train`.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--classifier", type=click.Path(), default=None, help="MNIST base: digit classifier (default <base>/classifier).")
@click.option("--clip", default=None, help="SD pipelines: CLIP directory or Hub id (object/style judge, FID/KID features).")
@click.option("--samples-per-digit", type=click.IntRange(min=1), default=None, help="MNIST base (EvalConfig).")
@click.option("--prompts", type=click.IntRange(min=1), default=None, help="SD pipelines: evaluation prompts (SDEvalConfig).")
@click.option("--samples-per-prompt", type=click.IntRange(min=1), default=None, help="SD pipelines.")
@click.option("--inference-steps", type=click.IntRange(min=1), default=None)
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance (EvalConfig's on the MNIST base, SDEvalConfig's on SD).")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=None)
def evaluate(cfg, out: Path) -> None:
    """ASR (base = control), clean utility and an image grid, for the MNIST base or any SD pipeline."""
    quiet_libraries()
    import torch

    from t2i_poison.digit_pipeline import DigitDiffusionPipeline
    from t2i_poison.evaluate import check_sidecar
    from t2i_poison.pipelines import load_pipeline

    from poisonlab.t2i_run import CLASSIFIER_DIR, evaluate_mnist, evaluate_sd, read_sidecar

    torch.set_num_threads(cfg.threads)
    lora = Path(cfg.lora)
    sidecar = read_sidecar(lora)
    pipe = load_pipeline(cfg.base)
    digits = isinstance(pipe, DigitDiffusionPipeline)
    cfg.refuse_unread(digits)
    cfg.check_steps(pipe.scheduler.config.num_train_timesteps, digits)
    if digits:
        check_sidecar(sidecar)
    clf = Path(cfg.classifier or Path(cfg.base) / CLASSIFIER_DIR)
    if digits and not clf.is_dir():
        raise InputError(f"digit classifier {clf} not found; pass --classifier or pretrain the base with `t2i pretrain-base`")
    with staged_output(out) as stage:
        write_yaml(stage / "config.yaml", cfg)
        m = evaluate_mnist(pipe, lora, sidecar, clf, cfg.digits, stage) if digits else evaluate_sd(pipe, lora, sidecar, cfg.clip, cfg.sd, stage)
    control = f"(base control {m['asr_base_triggered']:.3f})"
    click.echo(f"{out}: ASR {m['attack_success_rate']:.3f} {control}" + (
        f", clean accuracy {m['bd_clean_accuracy']:.3f} (base {m['base_clean_accuracy']:.3f})" if digits else ""))
