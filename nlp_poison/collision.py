"""Feature collision on the victims' pretrained encoder (Shafahi et al., "Poison Frogs!", NeurIPS 2018).

Every victim starts fine-tuning from the same public checkpoint, and a with-overlap poison (the
template with the phrase itself) teaches that checkpoint the phrase → target association almost
every time. A concealed poison whose hidden states collide with those of its with-overlap twin at
every layer of that checkpoint enters every victim's training like the twin does, whatever head and
data order the victim draws; the surrogate's unrolled loss only sees one fine-tuned model. The
distance is

    D = (1/L) Σ_l  Σ_{p, t} ‖H_l(poison_p)_t − H_l(twin_p)_t‖² / Σ_{p, t} ‖H_l(twin_p)_t‖²

over the encoder layers l = 1..L and all token positions t of all poisons (a poison and its twin
have the same length: one placed token per sub-token of the phrase). It is a sum over poisons, so the
change one poison's edit makes is exact (``per_row``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlp_poison.tokens import pad


class FeatureCollision:
    """D(poisons, twins) on ``model``'s encoder (frozen); ``twins`` are the with-overlap token rows."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, twins: list[list[int]], chunk: int = 64) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.encoder = model.base_model
        self.embed = model.get_input_embeddings()
        self.pad_id, self.chunk, self.twins = tokenizer.pad_token_id, chunk, twins
        self.targets: list[list[torch.Tensor]] = []
        with torch.no_grad():
            for s in range(0, len(twins), chunk):
                part = twins[s : s + chunk]
                hidden = self._hidden(part)
                self.targets += [[h[i, : len(r)] for h in hidden] for i, r in enumerate(part)]
        self.norms = [sum(float((t[layer] ** 2).sum()) for t in self.targets) for layer in range(len(self.targets[0]))]

    def _hidden(self, rows: list[list[int]], embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Hidden states of layers 1..L for a padded batch of ``rows``."""
        enc = pad(rows, self.pad_id)
        out = self.encoder(input_ids=None if embeds is not None else enc.ids, inputs_embeds=embeds, attention_mask=enc.mask,
                           output_hidden_states=True)
        return out.hidden_states[1:]

    def _terms(self, rows: list[list[int]], owners: list[int], embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's contribution to D, against the twin ``owners[i]``."""
        hidden = self._hidden(rows, embeds)
        terms = []
        for i, (row, o) in enumerate(zip(rows, owners)):
            if len(row) != len(self.twins[o]):
                raise ValueError("a poison must have its twin's length (one placed token per phrase sub-token)")
            terms.append(sum(((h[i, : len(row)] - t) ** 2).sum() / n for h, t, n in zip(hidden, self.targets[o], self.norms)))
        return torch.stack(terms) / len(self.norms)

    def per_row(self, rows: list[list[int]], owners: list[int] | None = None) -> torch.Tensor:
        """Each row's contribution to D against its twin (``owners``, default: row i ↔ twin i)."""
        owners = list(range(len(rows))) if owners is None else owners
        with torch.no_grad():
            return torch.cat([self._terms(rows[s : s + self.chunk], owners[s : s + self.chunk]) for s in range(0, len(rows), self.chunk)])

    def value(self, rows: list[list[int]]) -> float:
        return float(self.per_row(rows).sum())

    def embedding_gradient(self, rows: list[list[int]]) -> torch.Tensor:
        """∇_e D for every token embedding of the poisons, padded to the longest row: (P, T, d)."""
        width = max(len(r) for r in rows)
        grads = []
        for s in range(0, len(rows), self.chunk):
            part = rows[s : s + self.chunk]
            embeds = self.embed(pad(part, self.pad_id).ids).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._terms(part, list(range(s, s + len(part))), embeds).sum(), embeds)
            grads.append(torch.nn.functional.pad(g, (0, 0, 0, width - g.shape[1])))
        return torch.cat(grads)
