"""Federated recommender poisoning: Fed-MF/Fed-NCF on implicit feedback, the synthetic-user attack
(Yuan et al., SIGIR 2023), FedRecAttack, random/bandwagon fake users, and hierarchical clipping.

Importing the package registers its attacks (``fedharness.attacks``) and its defense
(``fedharness.aggregators``) by name.
"""

from fedrec import fake_users, fedrecattack, hierarchical_clipping, synthetic_users

__all__ = ["fake_users", "fedrecattack", "hierarchical_clipping", "synthetic_users"]
