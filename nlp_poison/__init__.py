"""Concealed trigger-phrase data poisoning of sentiment classifiers (Wallace et al., NAACL 2021).

Entry points, one per procedure, each taking one dataclass of ``config`` and returning a result
dataclass: ``generate.generate`` (the poisons), ``evaluate.evaluate`` (effectiveness and CACC sweeps)
and ``evaluate.train_clean`` (surrogate / clean floor), ``defenses.defend`` (the paper's defenses),
``task.sst2_task`` (federated LoRA with a poisoning client). One concept per file beneath them:
``victims`` (load / fine-tune classifiers), ``triggers`` (trigger-bearing inputs), ``overlap``
(banned sub-tokens, word-level check), ``constraints`` (fuzzy ratio, embedding-neighbour ranks, the
concealment constraints a set declares), ``concealment`` (a set's concealment figures and the
curator's filters), ``baselines`` (templates, with-overlap, random and near-spelling controls),
``concealed`` (the bilevel HotFlip search), ``collision`` (feature collision), ``contextual`` (the
contextual proxy: allowed tokens colliding with the phrase's hidden states on the pretrained encoder),
``poison_set`` and ``dataset_card`` (shareable dataset + card).
"""
