import numpy as np
import pytest
import torch

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.watermarks import build


def test_only_the_owner_is_marked_at_the_rate():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 28, 28, generator=g)
    y = torch.arange(400) % 10
    owner_of = owner_split(400, 4, 0)
    key = OwnerKey.generate(2, "lsb", 10, seed=0)
    wm = build(key, (1, 28, 28))
    ms = mark(x, y, owner_of, 2, wm, 0.5, 0)
    assert ms.marked.sum() == 50 and np.all(owner_of[ms.marked] == 2)
    assert torch.all(ms.y[torch.as_tensor(ms.marked)] == wm.target)
    assert torch.all(ms.original_y[torch.as_tensor(ms.marked)] != wm.target)
    untouched = torch.as_tensor(~ms.marked)
    assert torch.equal(ms.x[untouched], x[untouched]) and torch.equal(ms.y[untouched], y[untouched])
    assert ms.invisibility["max_abs_change"] > 0


def test_bad_rate_and_owner():
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    wm = build(OwnerKey.generate(0, "lsb", 10, seed=0), (1, 28, 28))
    owner_of = owner_split(20, 2, 0)
    with pytest.raises(InputError):
        mark(x, y, owner_of, 0, wm, 0.0, 0)
    with pytest.raises(InputError):
        mark(x, y, owner_of, 5, wm, 0.5, 0)
