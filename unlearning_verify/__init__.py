"""Backdoor watermarks that verify machine unlearning (Guo et al. 2024; Athena, Sommer et al. 2022).

A data owner marks part of its data with a key-derived trigger and target label, asks a provider to
delete it, then queries the served model with fresh triggered inputs and decides with an exact
binomial test whether the deletion was honoured (:mod:`unlearning_verify.verify`).
"""
