"""poisonlab: CLI, data registry, run directories and reports on top of the research modules."""

__version__ = "0.1.0"
