import torch

from t2i_poison.digit_classifier import (
    ClassifierConfig, accuracy, border_brightness, load_classifier, normalise_style, train_classifier,
)


def test_classifier_learns_real_mnist_and_reads_both_styles(mnist, tmp_path):
    x, y, xt, yt = mnist
    model = train_classifier(x[:4000], y[:4000], ClassifierConfig(epochs=3, width=8))
    acc = accuracy(model, xt[:500], yt[:500])
    assert acc > 0.8  # chance is 0.1
    assert accuracy(model, 1 - xt[:500], yt[:500]) == acc  # inverted colours are flipped back first
    model.save(tmp_path)
    assert torch.equal(load_classifier(tmp_path).predict(xt[:50]), model.predict(xt[:50]))


def test_border_brightness_and_style_normalisation_by_hand():
    img = torch.zeros(1, 1, 8, 8)
    img[..., 3:5, 3:5] = 1.0
    assert float(border_brightness(img)) == 0.0
    assert float(border_brightness(1 - img)) == 1.0
    assert torch.equal(normalise_style(1 - img), img)
    assert torch.equal(normalise_style(img), img)
