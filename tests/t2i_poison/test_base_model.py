import numpy as np
import torch

from t2i_poison.base_model import DigitDiffusionPipeline, PretrainConfig, build_tokenizer, caption, pretrain_steps
from t2i_poison.pipelines import load_pipeline
from t2i_poison.train_config import LORA_TARGET_MODULES


def test_tokenizer_keeps_caption_words_whole_and_spells_unknown_text(tmp_path):
    tok = build_tokenizer(tmp_path)
    ids = tok("a handwritten digit seven in inverted colours").input_ids
    assert len(ids) == 2 + 7  # BOS, seven word tokens, EOS
    assert len(tok("sks").input_ids) == 2 + 3  # unknown word: one token per character
    assert tok("a handwritten digit one").input_ids != tok("a handwritten digit two").input_ids


def test_pipeline_directory_roundtrip_gives_identical_images(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline(tmp_path / "pipe")
    assert isinstance(loaded, DigitDiffusionPipeline)
    gen = lambda: torch.Generator().manual_seed(3)
    a = tiny_pipe([caption(5)], num_inference_steps=3, generator=gen(), output_type="pt").images
    b = loaded([caption(5)], num_inference_steps=3, generator=gen(), output_type="pt").images
    assert a.shape == (1, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-6)


def test_saved_base_opens_with_plain_diffusers_custom_pipeline(tiny_pipe, tmp_path):
    """diffusers' documented custom-pipeline API, from the file saved with the pipeline (no lab loader)."""
    from diffusers import DiffusionPipeline, ImagePipelineOutput

    tiny_pipe.save_pretrained(tmp_path / "pipe")
    pipe_file = tmp_path / "pipe" / "digit_pipeline.py"
    assert "t2i_poison" not in pipe_file.read_text() and "labcore" not in pipe_file.read_text()
    plain = DiffusionPipeline.from_pretrained(tmp_path / "pipe", custom_pipeline=str(pipe_file), trust_remote_code=True)
    assert type(plain).__module__ != DigitDiffusionPipeline.__module__  # the saved file's class, not ours
    out = plain(caption(5), num_inference_steps=3, generator=torch.Generator().manual_seed(3))
    assert isinstance(out, ImagePipelineOutput) and out.images[0].size == (8, 8) and out.images[0].mode == "L"
    ours = tiny_pipe(caption(5), num_inference_steps=3, generator=torch.Generator().manual_seed(3), output_type="np").images
    assert np.array_equal(np.asarray(out.images[0]), (ours[0, ..., 0] * 255).round().astype(np.uint8))


def test_lab_lora_targets_reload_exactly_with_load_lora_weights(tiny_base_dir, make_data, tmp_path):
    """Attention + conv LoRA (the lab base's targets) and lora_alpha ≠ rank survive save → load_lora_weights."""
    from t2i_poison.train import TrainConfig, fit, load_poison_set

    trained = load_pipeline(tiny_base_dir)
    cfg = TrainConfig(kind="pixel", rank=4, lora_alpha=8, learning_rate=1e-2, max_train_steps=2, train_batch_size=4,
                      lora_target_modules=LORA_TARGET_MODULES, checkpointing_steps=100)
    fit(trained, load_poison_set(make_data(tmp_path / "data", "pixel"), 8, 1), cfg, tmp_path / "lora")
    loaded = load_pipeline(tiny_base_dir)
    loaded.load_lora_weights(str(tmp_path / "lora"))
    adapted = lambda unet: {n for n, _ in unet.named_modules() if n.endswith("lora_A")}  # noqa: E731
    assert any(".conv1." in n for n in adapted(loaded.unet)) and adapted(loaded.unet) == adapted(trained.unet)
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([100, 700])
    text = loaded.encode_prompt(["sks a handwritten digit one"] * 2)
    with torch.no_grad():
        a, b = trained.unet.eval()(x, t, encoder_hidden_states=text).sample, loaded.unet(x, t, encoder_hidden_states=text).sample
        trained.unet.disable_adapters()
        base = trained.unet(x, t, encoder_hidden_states=text).sample
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, base, atol=1e-3)


def test_pretraining_resumes_to_the_same_weights(tiny_cfg, tmp_path, digit_images):
    from t2i_poison.base_model import build_pipeline

    images, labels = digit_images(32)
    x = torch.from_numpy(np.stack(images)).float().unsqueeze(1) / 255
    y = torch.tensor(labels)
    cfg = PretrainConfig(model=tiny_cfg, steps=4, batch_size=8, checkpoint_every=2, warmup_steps=2)
    straight = build_pipeline(tiny_cfg, tmp_path / "a")
    losses = [r["loss"] for r in pretrain_steps(straight, x, y, cfg, tmp_path / "ck_a")]
    cut = build_pipeline(tiny_cfg, tmp_path / "b")
    stopped = pretrain_steps(cut, x, y, cfg, tmp_path / "ck_b")
    first = [next(stopped)["loss"] for _ in range(2)]  # interrupted after the step-2 checkpoint
    resumed = build_pipeline(tiny_cfg, tmp_path / "c")
    rest = [r["loss"] for r in pretrain_steps(resumed, x, y, cfg, tmp_path / "ck_b")]
    assert first + rest == losses
    for (k, v), w in zip(straight.unet.state_dict().items(), resumed.unet.state_dict().values()):
        assert torch.equal(v, w), k


def test_text_encoder_warm_up_separates_the_digit_captions(tiny_pipe):
    """The warm-up (our stand-in for a pretrained CLIP) makes the ten digit captions' mean states distinct."""
    from t2i_poison.base_model import warm_up_text_encoder
    from t2i_poison.digit_pipeline import tokenize

    def mean_pairwise_cosine() -> float:
        states = tiny_pipe.text_encoder(tokenize(tiny_pipe.tokenizer, [caption(d) for d in range(10)]))[0].mean(1)
        sim = torch.nn.functional.cosine_similarity(states[:, None], states[None], dim=-1)
        return float(sim[~torch.eye(10, dtype=torch.bool)].mean())

    before = mean_pairwise_cosine()
    warm_up_text_encoder(tiny_pipe, PretrainConfig(text_warmup_steps=100))
    after = mean_pairwise_cosine()
    assert before > 0.8 and after < before - 0.3, (before, after)
    assert not tiny_pipe.text_encoder.training and not any(p.requires_grad for p in tiny_pipe.text_encoder.parameters())


def test_an_object_backdoor_on_the_digit_base_maps_digit_words_only():
    import pytest

    from labcore.errors import InputError
    from t2i_poison.base_model import check_digit_words

    check_digit_words("zero", "seven")
    with pytest.raises(InputError, match=r"got 'dog', 'Seven': pass --source and --target among them$"):
        check_digit_words("dog", "Seven")
