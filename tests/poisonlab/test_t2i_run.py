"""``t2i evaluate``'s settings: what each pipeline family reads, and the refusal of what it would ignore."""

import pytest

from labcore.errors import InputError
from poisonlab.t2i_run import EvaluateRun
from t2i_poison.evaluate import EvalConfig
from t2i_poison.evaluate_sd import SDEvalConfig


def test_the_defaults_and_the_settings_both_families_hold_pass_on_either():
    both = EvaluateRun(digits=EvalConfig(num_inference_steps=3, guidance_scale=1.5, seed=4),
                       sd=SDEvalConfig(num_inference_steps=3, guidance_scale=1.5, seed=4))
    edited = EvaluateRun(digits=EvalConfig(seed=7), sd=SDEvalConfig(seed=4, num_inference_steps=5))  # a saved config, one side edited
    for digits in (True, False):
        EvaluateRun().refuse_unread(digits)
        both.refuse_unread(digits)
        edited.refuse_unread(digits)


def test_the_other_familys_settings_are_refused_by_name():
    with pytest.raises(InputError, match=r"^sd.prompts, sd.batch_size, clip: not read on the MNIST base "
                                         r"\(it reads digits.\* and classifier\); drop them$"):
        EvaluateRun(sd=SDEvalConfig(prompts=3, batch_size=100), clip="openai/clip").refuse_unread(True)
    with pytest.raises(InputError, match=r"^digits.samples_per_digit, classifier: not read on a Stable Diffusion"):
        EvaluateRun(digits=EvalConfig(samples_per_digit=2), classifier="c").refuse_unread(False)
    EvaluateRun(sd=SDEvalConfig(prompts=3), clip="openai/clip").refuse_unread(False)
    EvaluateRun(digits=EvalConfig(samples_per_digit=2), classifier="c").refuse_unread(True)


def test_sampling_steps_must_fit_the_scheduler_of_the_family_in_use():
    run = EvaluateRun(base="b", lora="l", digits=EvalConfig(num_inference_steps=1000), sd=SDEvalConfig(num_inference_steps=1001))
    run.check_steps(1000, digits=True)
    with pytest.raises(InputError, match=r"^--inference-steps 1001: this pipeline's scheduler samples in 1 to 1000 steps"):
        run.check_steps(1000, digits=False)


@pytest.mark.parametrize("guidance", [-5.0, float("nan"), float("inf")])
def test_guidance_must_be_finite_and_not_negative(guidance):
    with pytest.raises(InputError, match="--guidance must be a finite number ≥ 0"):
        EvaluateRun(base="b", lora="l", sd=SDEvalConfig(guidance_scale=guidance)).validate()
    EvaluateRun(base="b", lora="l", digits=EvalConfig(guidance_scale=0.0)).validate()
