import torch

from fedharness.translate import random_translate


def _dot_images(n: int, channels: int = 1) -> torch.Tensor:
    x = torch.zeros(n, channels, 9, 9)
    x[:, :, 4, 4] = 1.0
    return x


def test_each_image_moves_by_at_most_max_shift_whole_pixels():
    g = torch.Generator().manual_seed(0)
    moved = random_translate(_dot_images(40), 2, g)
    where = moved[:, 0].flatten(1).argmax(1)
    rows, cols = where // 9, where % 9
    assert torch.equal(moved.flatten(1).sum(1), torch.ones(40))  # whole-pixel moves, nothing lost
    assert int((rows - 4).abs().max()) == 2 and int((cols - 4).abs().max()) == 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5


def test_channels_move_together_and_offsets_follow_the_generator():
    x = _dot_images(8, channels=3)
    moved = random_translate(x, 1, torch.Generator().manual_seed(3))
    assert torch.equal(moved[:, 0], moved[:, 1]) and torch.equal(moved[:, 0], moved[:, 2])
    g = torch.Generator().manual_seed(3)
    dx, dy = (torch.randint(0, 3, (8,), generator=g) for _ in range(2))  # columns drawn first
    where = moved[:, 0].flatten(1).argmax(1)
    assert torch.equal(where // 9, 4 + 1 - dy) and torch.equal(where % 9, 4 + 1 - dx)


def test_zero_shift_returns_the_images_themselves():
    x = _dot_images(2)
    assert random_translate(x, 0, torch.Generator()) is x
