import numpy as np
import torch

from fedharness.tasks.head_finetune import ExtractorHead
from fedharness.tasks.image_classification import SmallCNN
from unlearning_verify import providers
from unlearning_verify.providers import ProviderState


def test_head_retrain_refits_only_the_last_layer_on_retained_rows():
    torch.manual_seed(0)
    extractor = SmallCNN().eval().requires_grad_(False)
    model = ExtractorHead(extractor, 3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 28, 28, generator=g)
    y = torch.arange(40) % 3
    forget = np.zeros(40, dtype=bool)
    forget[:10] = True
    y_flipped = y.clone()
    y_flipped[:10] = 2  # deleted rows carry labels the retained data contradicts
    provider = providers.get("head_retrain")
    served = provider.unlearn(ProviderState(x, y_flipped, forget, model, [], 3, seed=0))
    assert provider.honest and served is not model
    assert all(torch.equal(a, b) for a, b in zip(served.extractor.state_dict().values(), extractor.state_dict().values()))
    assert not torch.equal(served.head.weight, model.head.weight)
    with torch.no_grad():
        fit = (served(x[10:]).argmax(1) == y[10:]).float().mean()
    assert fit > 0.6
