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
