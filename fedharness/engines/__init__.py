"""Engines run the clients' local training; the math core stays the same under each."""
