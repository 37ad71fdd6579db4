"""One click command group per research module; ``poisonlab.cli`` mounts them."""
