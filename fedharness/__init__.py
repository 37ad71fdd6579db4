"""fedharness: the common federated training harness of poisonlab.

The math core (``aggregators/``, ``server.py``) maps tensors to tensors; engines, tasks and
client behaviours are built around it. Nothing here imports the research modules or the CLI.
"""

from labcore.errors import InputError

__all__ = ["InputError"]
