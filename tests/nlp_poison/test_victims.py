import numpy as np

from nlp_poison.victims import TrainConfig, fine_tune, load_classifier, predict_proba, save_classifier


def test_lora_fine_tune_saves_adapters_and_a_plain_model(sst2, tiny_dir, tmp_path):
    model, tok = load_classifier(str(tiny_dir))
    cfg = TrainConfig(epochs=1, lr=5e-3, batch_size=32, max_length=32, lora=True, lora_r=4, lora_alpha=8)
    seen = []
    tuned = fine_tune(model, tok, sst2["train"].select(range(128)), cfg, lambda e, m: seen.append(e), progress=False)
    assert seen == [1]
    texts = list(sst2["test"]["sentence"][:16])
    before = predict_proba(tuned, tok, texts, 32)
    save_classifier(tuned, tok, tmp_path / "m")
    assert (tmp_path / "m" / "pytorch_lora_weights.safetensors").is_file()
    reloaded, _ = load_classifier(str(tmp_path / "m"))
    np.testing.assert_allclose(predict_proba(reloaded, tok, texts, 32), before, atol=1e-5)


def test_same_seed_same_model(sst2, tiny_dir):
    outs = []
    for _ in range(2):
        model, tok = load_classifier(str(tiny_dir))
        tuned = fine_tune(model, tok, sst2["train"].select(range(96)), TrainConfig(epochs=1, lr=1e-3, max_length=32, seed=3), progress=False)
        outs.append(predict_proba(tuned, tok, list(sst2["test"]["sentence"][:8]), 32))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_length_grouped_batches_cover_every_example_once_with_less_padding():
    import torch

    from nlp_poison.victims import length_grouped_batches

    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 60, size=1000)]
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    plain_padded = sum(32 * max(lengths[i] for i in plain[s : s + 32]) for s in range(0, 1000, 32))
    assert padded < 0.75 * plain_padded
    again = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1))
    assert again == batches and length_grouped_batches(lengths, 32, torch.Generator().manual_seed(2)) != batches


def test_predictions_do_not_depend_on_the_length_order(sst2, tiny_dir):
    model, tok = load_classifier(str(tiny_dir))
    texts = list(sst2["test"]["sentence"][:40])
    together = predict_proba(model, tok, texts, 48, batch_size=8)
    alone = np.concatenate([predict_proba(model, tok, [t], 48) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_bf16_autocast_training_is_deterministic_and_finite(sst2, tiny_dir):
    outs = []
    for _ in range(2):
        model, tok = load_classifier(str(tiny_dir))
        cfg = TrainConfig(epochs=1, lr=1e-3, max_length=32, bf16=True, seed=3)
        tuned = fine_tune(model, tok, sst2["train"].select(range(96)), cfg, progress=False)
        assert {str(p.dtype) for p in tuned.parameters()} == {"torch.float32"}
        outs.append(predict_proba(tuned, tok, list(sst2["test"]["sentence"][:8]), 32))
    assert np.isfinite(outs[0]).all()
    np.testing.assert_array_equal(outs[0], outs[1])
