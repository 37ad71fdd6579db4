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
