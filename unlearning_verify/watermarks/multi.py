"""Several independent key-derived markers per owner, one verification (reference §6: fragility).

A dishonest provider can defeat one trigger family (LSB dies under quantisation, blended noise under
blur, a patch under median filtering or a query detector). The owner therefore marks with k
families at once, each with its own sub-key (HMAC of the owner's secret) and its own target class
(distinct, key-derived); every marked sample carries one marker, assigned round-robin among the
markers whose target differs from the sample's label. The verifier tests each marker and combines
the tests (``unlearning_verify.deletion``). Default families: ``lowfreq`` (survives purification),
``blended`` and ``patch``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass

import torch

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey

DEFAULT_FAMILIES = ("lowfreq", "blended", "patch")


def sub_key(key: OwnerKey, index: int, family: str) -> OwnerKey:
    """The independent key of marker ``index`` (HMAC-SHA256 of the owner's secret)."""
    secret = hmac.new(key.secret, f"multi/{index}/{family}".encode(), hashlib.sha256).digest()
    return OwnerKey(secret, key.owner, family, key.num_classes)


@dataclass
class MultiMarker:
    markers: list  # ImageWatermark, one per family
    target: int = -1  # no single target: every label is eligible, each sample gets a marker of another class
    family: str = "multi"
    clean_label: bool = False

    @classmethod
    def from_key(cls, key: OwnerKey, image_shape: tuple[int, int, int],
                 families: tuple[str, ...] | str = DEFAULT_FAMILIES) -> "MultiMarker":
        from unlearning_verify.watermarks import build

        names = tuple(families.split("+")) if isinstance(families, str) else tuple(families)
        if len(names) < 1 or "multi" in names or len(names) > key.num_classes:
            raise InputError(f"multi needs 1..{key.num_classes} single families, got {'+'.join(names)}")
        targets = key.rng("multi-targets").permutation(key.num_classes)[: len(names)]
        markers = [dataclasses.replace(build(sub_key(key, i, f), image_shape), target=int(t))
                   for i, (f, t) in enumerate(zip(names, targets))]
        return cls(markers)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        """Every marker in turn (row i gets marker i mod k); queries use the markers one by one."""
        out = x.clone()
        for i, m in enumerate(self.markers):
            out[i::len(self.markers)] = m.trigger(x[i::len(self.markers)])
        return out

    def assign(self, y: torch.Tensor) -> torch.Tensor:
        """Marker index per sample: round-robin, skipping markers whose target is the sample's label."""
        k = len(self.markers)
        choice = torch.empty(len(y), dtype=torch.long)
        for row, label in enumerate(y.tolist()):
            for step in range(k):
                m = (row + step) % k
                if self.markers[m].target != label:
                    break
            choice[row] = m
        return choice

    def poison(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        choice = self.assign(y)
        px, py = x.clone(), y.clone()
        for m, marker in enumerate(self.markers):
            rows = choice == m
            if rows.any():
                px[rows], py[rows] = marker.poison(x[rows], y[rows])
        return px, py
