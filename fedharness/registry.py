"""Named factories of one kind (aggregators, attacks, provider behaviours), for configs and CLIs.

Modules of a package register their classes with ``@registry.register("name")``; the package's
modules are imported on first lookup, so every built-in is known without a hand-kept list.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from labcore.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """``kind`` names what is registered in error messages; ``package`` is imported lazily."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self.factories: dict[str, Callable[..., T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class/function decorator adding a factory under ``name``."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            self.factories[name] = factory
            return factory

        return wrap

    def get(self, name: str, **params: object) -> T:
        """Build the factory registered as ``name``; unknown names and bad parameters are input errors."""
        self._load()
        if name not in self.factories:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        try:
            return self.factories[name](**params)
        except TypeError as exc:
            raise InputError(f"bad parameters for {self.kind} {name!r}: {exc}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self.factories)

    def name_of(self, instance: object) -> str:
        """The name ``instance``'s class is registered under (its class name when unregistered)."""
        return next((n for n, f in self.factories.items() if f is type(instance)), type(instance).__name__)

    def _load(self) -> None:
        if self._loaded:
            return
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        self._loaded = True
