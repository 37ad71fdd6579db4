import numpy as np
import torch

from t2i_poison.base_model import (
    DigitDiffusionPipeline, PretrainConfig, build_tokenizer, caption, load_pipeline, pretrain_steps,
)


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
    a = tiny_pipe([caption(5)], num_inference_steps=3, generator=gen())
    b = loaded([caption(5)], num_inference_steps=3, generator=gen())
    assert a.shape == (1, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-6)


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
