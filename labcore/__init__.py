"""Basics every poisonlab module may import (fedharness, the research modules and the CLI alike)."""
