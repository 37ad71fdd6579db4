import torch

from unlearning_verify.providers import get


def test_noop_serves_the_same_model(state):
    assert get("noop").unlearn(state) is state.model


def test_stale_serves_the_penultimate_checkpoint(state):
    served = get("stale").unlearn(state)
    for k, v in served.state_dict().items():
        assert torch.equal(v, state.checkpoints[-2][k])
    assert any(not torch.equal(v, state.model.state_dict()[k]) for k, v in served.state_dict().items())
