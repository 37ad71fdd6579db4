import numpy as np
import torch

from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier
from t2i_poison.evaluate import EvalConfig, evaluate_backdoor, grid_rows, kid, paired_drop, patch_mse
from t2i_poison.poison_data import checkerboard_patch
from t2i_poison.train import TrainConfig, fit, load_poison_set


def test_kid_separates_shifted_features_from_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 16, generator=g), torch.randn(200, 16, generator=g)
    same, _ = kid(a, b, 100, 20, seed=0)
    shifted, _ = kid(a, b + 1.0, 100, 20, seed=0)
    assert abs(same) < 0.05 < shifted


def test_paired_drop_by_hand():
    base = torch.tensor([1, 1, 1, 1, 0, 0, 1, 1]).bool()
    bd = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1]).bool()  # differences 0 1 0 0 0 −1 1 0: mean 1/8, sd √(2.875/7)
    drop, low, high = paired_drop(base, bd)
    half = 1.96 * (2.875 / 7) ** 0.5 / 8 ** 0.5
    assert abs(drop - 0.125) < 1e-9 and abs(low - (0.125 - half)) < 1e-9 and abs(high - (0.125 + half)) < 1e-9
    assert paired_drop(base, base) == (0.0, 0.0, 0.0)  # the same generations: no drop, no uncertainty


def test_patch_mse_by_hand():
    patch = checkerboard_patch(4, 2)
    img = torch.zeros(2, 1, 8, 8)
    img[1, 0, :4, :4] = torch.from_numpy(patch.pixels / 255.0)
    mse = patch_mse(img, patch.pixels, 0, 0)
    assert mse[0].item() == 0.5  # half of the patch is white, image is black
    assert mse[1].item() == 0.0


def test_evaluate_reports_controls_and_grid(tiny_base_dir, make_data, tmp_path):
    from t2i_poison.pipelines import load_pipeline

    data = load_poison_set(make_data(tmp_path / "data", "pixel"), 8, 1)
    patch = checkerboard_patch(4, 2)
    sidecar = fit(
        load_pipeline(tiny_base_dir), data,
        TrainConfig(kind="pixel", max_train_steps=2, train_batch_size=4, learning_rate=1e-2), tmp_path / "lora",
        extra_sidecar={"patch": {"top": 0, "left": 0, "pixels": patch.pixels.tolist()}},
    )
    clf = DigitClassifier(ClassifierConfig(resolution=8, width=8)).eval()
    cfg = EvalConfig(samples_per_digit=2, num_inference_steps=2, kid_subset_size=10, kid_subsets=3)
    real = torch.rand(30, 1, 28, 28)
    pipe = load_pipeline(tiny_base_dir)
    metrics, images = evaluate_backdoor(pipe, tmp_path / "lora", sidecar, clf, real, cfg)
    for key in ("attack_success_rate", "asr_base_triggered", "bd_clean_accuracy", "base_clean_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["benign_drift_mse"] > 0.0  # the LoRA changed the clean generations
    low, high = metrics["clean_accuracy_drop_ci95"]
    assert low <= metrics["clean_accuracy_drop"] <= high
    assert abs(metrics["clean_accuracy_drop"] - (metrics["base_clean_accuracy"] - metrics["bd_clean_accuracy"])) < 1e-6
    reused, _ = evaluate_backdoor(pipe, tmp_path / "lora", sidecar, clf, real, cfg, base_images=images)  # a sweep's cache
    assert reused == metrics
    assert images["bd_clean"].shape == (20, 1, 8, 8)
    # the LoRA was removed again: the pipeline is the base model
    again = pipe(["a handwritten digit one"], num_inference_steps=2, latents=torch.zeros(1, 1, 8, 8), output_type="pt").images
    fresh = load_pipeline(tiny_base_dir)(["a handwritten digit one"], num_inference_steps=2, latents=torch.zeros(1, 1, 8, 8), output_type="pt").images
    assert torch.allclose(again, fresh, atol=1e-6)
    tiles, labels = grid_rows(images, 2)
    assert len(tiles) == 40 and tiles[0].dtype == np.uint8


def test_an_object_backdoor_between_non_digit_words_is_refused_with_the_fix_for_a_trained_lora():
    import pytest

    from labcore.errors import InputError
    from t2i_poison.evaluate import check_sidecar

    check_sidecar({"kind": "object", "source_word": "zero", "target_word": "seven"})
    check_sidecar({"kind": "style", "source_word": "dog"})
    with pytest.raises(InputError, match=r"got 'dog': this LoRA was trained on an object set the MNIST base cannot score; "
                                         r"remake the set with digit words and retrain$"):
        check_sidecar({"kind": "object", "source_word": "dog", "target_word": "seven"})
