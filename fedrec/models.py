"""Recommender models split into a global part (item table + shared layers) and a private user vector.

The ``nn.Module`` holds only what is federated: ``item`` (one row per item) and, for NCF, the shared
layers. A user's embedding is never a parameter of it: the client computes it on the device (see
``fedrec.local``) and passes it to :func:`score` as a plain tensor.

- **MF**: s(u, i) = pᵤ·qᵢ.
- **NCF** (He et al. 2017, NeuMF, eq. 12): item row qᵢ = [qᵢᴳ, qᵢᴹ], user vector pᵤ = [pᵤᴳ, pᵤᴹ];
  s = hᵀ[pᵤᴳ ⊙ qᵢᴳ, MLP([pᵤᴹ, qᵢᴹ])], MLP of ReLU layers 2D → D → D/2 (the tower shape is our
  choice; the paper's towers halve each layer as here).

  Initialisation: the GMF half of h starts at 1, so the GMF tower starts as MF (pᵤ·qᵢ); the MLP half
  and the layers keep PyTorch's defaults (He et al., §3.4.1, start NeuMF from a pre-trained GMF
  and MLP instead of a random h). Through a default h (|hₖ| ≤ 0.14) the GMF tower's gradients
  shrink by ~h², the client's pᵤ (fitted under L2) stays near 0, and Fed-NCF learned item
  popularity only (HR@10 0.22–0.30 against ItemPop's 0.32; measured in the README's recommender
  section).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from labcore.errors import InputError

MODELS = ("mf", "ncf")


class MF(nn.Module):
    def __init__(self, num_items: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.item = nn.Parameter(torch.randn(num_items, dim) * init_std)
        self.user_dim = dim

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user (D,), items (L, D) → scores (L,)."""
        return items @ user


class NCF(nn.Module):
    def __init__(self, num_items: int, dim: int, init_std: float) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise InputError(f"ncf needs an even dim >= 2, got {dim}")
        self.dim = dim
        self.item = nn.Parameter(torch.randn(num_items, 2 * dim) * init_std)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim // 2), nn.ReLU())
        self.out = nn.Linear(dim + dim // 2, 1)
        with torch.no_grad():
            self.out.weight[:, :dim] = 1.0
        self.user_dim = 2 * dim

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        d = self.dim
        gmf = user[:d] * items[:, :d]
        mlp = self.mlp(torch.cat([user[d:].expand(len(items), d), items[:, d:]], dim=1))
        return self.out(torch.cat([gmf, mlp], dim=1)).squeeze(1)


def build(name: str, num_items: int, dim: int, init_std: float) -> nn.Module:
    if name not in MODELS:
        raise InputError(f"task.params.model {name!r} is unknown; use one of {', '.join(MODELS)}")
    if dim < 1:
        raise InputError(f"task.params.dim must be >= 1, got {dim}")
    return (MF if name == "mf" else NCF)(num_items, dim, init_std)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x (c, L, in) through a layer shared by all c clients (w (out, in)) or one per client (w (c, out, in))."""
    if w.dim() == 2:
        return F.linear(x, w, b)
    y = torch.bmm(x, w.transpose(1, 2))
    return y if b is None else y + b.unsqueeze(1)


def ncf_item_side(model: NCF, shared: dict[str, torch.Tensor], items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The user-independent part of NCF on items (c, L, 2D): (GMF half qᵢᴳ, W_q·qᵢᴹ + b of the first MLP
    layer). The first layer's input is [pᵤᴹ, qᵢᴹ], so W·[p; q] = W_p·p + W_q·q: the item half can be
    computed once while only pᵤ changes (a client fitting its user vector)."""
    d = model.dim
    return items[..., :d], _linear(items[..., d:], shared["mlp.0.weight"][..., :, d:], shared["mlp.0.bias"])


def ncf_head(model: NCF, shared: dict[str, torch.Tensor], users: torch.Tensor, side: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """NCF scores (c, L) of users (c, 2D) given their items' :func:`ncf_item_side`."""
    d = model.dim
    gmf_items, x = side
    x = x + _linear(users[:, None, d:], shared["mlp.0.weight"][..., :, :d])
    for i, layer in enumerate(model.mlp):
        if i:
            x = _linear(x, shared[f"mlp.{i}.weight"], shared[f"mlp.{i}.bias"]) if isinstance(layer, nn.Linear) else layer(x)
    gmf = users[:, None, :d] * gmf_items
    return _linear(torch.cat([gmf, x], dim=-1), shared["out.weight"], shared["out.bias"]).squeeze(-1)


def ncf_scores(model: NCF, shared: dict[str, torch.Tensor], users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """NCF scores (c, L) of c users (c, 2D) for their items (c, L, 2D), batched over clients: the same
    function as :meth:`NCF.forward` per client, the shared layers common (``(out, in)`` tensors) or one
    copy per client (a leading c axis, as during local training)."""
    return ncf_head(model, shared, users, ncf_item_side(model, shared, items))


def score(model: nn.Module, shared: dict[str, torch.Tensor], user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores of ``items`` (L, row) for ``user``, the shared layers taken from ``shared`` (functional)."""
    return functional_call(model, shared, (user, items))

