"""Backdoor watermarks that verify machine unlearning (Guo et al. 2024; Athena, Sommer et al. 2022).

A data owner marks part of its data with key-derived triggers and target labels, asks a provider to
delete it, then queries the served model with fresh triggered inputs and decides with exact binomial
tests and a membership check whether the deletion was honoured. The entry point is
:func:`unlearning_verify.deletion.verify_deletion` (also importable from this package).
"""

from __future__ import annotations

__all__ = ["verify_deletion", "VerifyConfig", "DeletionVerdict", "QueryData"]


def __getattr__(name: str) -> object:
    """Lazy exports: importing the package (e.g. for the key file) does not load torch."""
    if name in __all__:
        from unlearning_verify import deletion

        return getattr(deletion, name)
    raise AttributeError(name)
