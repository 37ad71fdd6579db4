import copy

import torch
import torch.nn.functional as F

from unlearning_verify.providers import get


def test_finetune_changes_a_copy(state):
    before = copy.deepcopy(state.model.state_dict())
    served = get("finetune", epochs=1).unlearn(state)
    assert served is not state.model
    assert all(torch.equal(v, state.model.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, before[k]) for k, v in served.state_dict().items())


def test_gradient_ascent_raises_the_loss_on_deleted_rows(state):
    forget = torch.as_tensor(state.forget)
    with torch.no_grad():
        before = F.cross_entropy(state.model(state.x[forget]), state.y[forget])
    served = get("gradient_ascent", repair_epochs=0, ascent_lr=1e-2).unlearn(state)
    with torch.no_grad():
        after = F.cross_entropy(served(state.x[forget]), state.y[forget])
    assert after > before
