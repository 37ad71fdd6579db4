"""Concealed trigger-phrase data poisoning of sentiment classifiers (Wallace et al., NAACL 2021).

One concept per file: ``victims`` (load / fine-tune classifiers), ``triggers`` (trigger-bearing
inputs), ``overlap`` (banned sub-tokens, word-level check), ``baselines`` (with-overlap and random
controls), ``concealed`` (the bilevel HotFlip search), ``poison_set`` (shareable dataset + card),
``evaluate`` (effectiveness, CACC, sweeps), ``defenses`` (perplexity, embedding distance, early
stopping), ``task`` (federated text classification over LoRA adapters).
"""
