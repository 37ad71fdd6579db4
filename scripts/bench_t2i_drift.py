"""Where a BadT2I LoRA's clean-accuracy cost lives on the lab's MNIST base (issue 14): which guidance branch, which digits,
and whether the clean generations' brightness or contrast moved (a style backdoor leaking into clean prompts).

Clean captions are sampled from the same starting noise (``t2i_poison.evaluate.initial_noise``) with DDIM and
classifier-free guidance ε = ε_u + g·(ε_c − ε_u), switching the LoRA on or off separately for the conditional branch
ε_c and the unconditional branch ε_u: base/base, LoRA/LoRA, LoRA on ε_c only, LoRA on ε_u only, and both models at
guidance 1 (ε_c alone). Each line: digit accuracy (the lab's classifier), per-digit accuracy, mean intensity, the
2-pixel frame's brightness (the style test) and per-image contrast (std); one JSON object per setting on stdout.

    python scripts/bench_t2i_drift.py --base runs/t2i-base --lora runs/bench-lora/runs/style-... [--samples-per-digit 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from poisonlab.t2i_run import CLASSIFIER_DIR
from t2i_poison.base_model import DigitDiffusionPipeline, caption
from t2i_poison.pipelines import load_pipeline
from t2i_poison.digit_classifier import DigitClassifier, border_brightness, load_classifier
from t2i_poison.evaluate import EvalConfig, digit_labels, initial_noise

SETTINGS = {  # name: (LoRA on ε_c, LoRA on ε_u, guidance; None = EvalConfig's)
    "base": (False, False, None), "lora": (True, True, None), "lora on conditional only": (True, False, None),
    "lora on unconditional only": (False, True, None), "base, guidance 1": (False, False, 1.0), "lora, guidance 1": (True, True, 1.0),
}


@torch.no_grad()
def sample(pipe: DigitDiffusionPipeline, prompts: list[str], noise: torch.Tensor, lora_c: bool, lora_u: bool,
           guidance: float, steps: int) -> torch.Tensor:
    """DDIM with guidance, the adapter enabled per branch; images in [0, 1]."""
    cond, uncond = pipe.encode_prompt(prompts), pipe.encode_prompt([""] * len(prompts))
    x = noise.clone()
    pipe.scheduler.set_timesteps(steps)

    def eps(states: torch.Tensor, lora: bool, t: torch.Tensor) -> torch.Tensor:
        pipe.enable_lora() if lora else pipe.disable_lora()
        return pipe.unet(x, t, encoder_hidden_states=states).sample

    for t in pipe.scheduler.timesteps:
        e_c = eps(cond, lora_c, t)
        e_u = eps(uncond, lora_u, t) if guidance != 1.0 else e_c
        x = pipe.scheduler.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
    pipe.enable_lora()
    return (x.clamp(-1, 1) + 1) / 2


def describe(images: torch.Tensor, labels: torch.Tensor, classifier: DigitClassifier) -> dict:
    correct = (classifier.predict(images) == labels).float()
    return {"accuracy": round(float(correct.mean()), 4),
            "per_digit": [round(float(v), 3) for v in correct.reshape(10, -1).mean(1)],
            "mean_intensity": round(float(images.mean()), 4), "frame_brightness": round(float(border_brightness(images).mean()), 4),
            "contrast": round(float(images.std(dim=(1, 2, 3)).mean()), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, required=True, help="Lab base pipeline directory with classifier/.")
    p.add_argument("--lora", type=Path, required=True, help="A `t2i train` / bench run directory (LoRA mode).")
    ev = EvalConfig()
    p.add_argument("--samples-per-digit", type=int, default=ev.samples_per_digit)
    p.add_argument("--seed", type=int, default=ev.seed)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    pipe = load_pipeline(args.base)
    pipe.load_lora_weights(str(args.lora), adapter_name="backdoor")
    classifier = load_classifier(args.base / CLASSIFIER_DIR)
    labels = digit_labels(args.samples_per_digit)
    digits = labels.tolist()
    noise = initial_noise(len(digits), pipe, args.seed)
    for name, (lora_c, lora_u, guidance) in SETTINGS.items():
        images = sample(pipe, [caption(d) for d in digits], noise, lora_c, lora_u, guidance or ev.guidance_scale,
                        ev.num_inference_steps)
        print(json.dumps({"setting": name, **describe(images, labels, classifier)}), flush=True)


if __name__ == "__main__":
    main()
