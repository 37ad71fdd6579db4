import torch

from unlearning_verify.providers import get, sisa


def test_sisa_shards_never_see_deleted_rows(state, monkeypatch, fit_recorder, row_ids):
    seen: list[torch.Tensor] = []
    real = sisa.train

    def recording_train(model, x, y, cfg, seed, **kw):
        seen.append(x)
        return real(model, x, y, cfg, seed, **kw)

    monkeypatch.setattr(sisa, "train", recording_train)
    served = get("sisa", shards=3, slices=2).unlearn(state)
    assert len(served.members) == 3 and len(seen) == 6
    rows = set().union(*(row_ids(x, state.x) for x in seen))
    assert rows == set(range(40, 120))
    assert all(len(seen[2 * s]) < len(seen[2 * s + 1]) for s in range(3))  # slices train incrementally
    out = served(state.x[:5])
    assert torch.allclose(out.exp().sum(1), torch.ones(5))
