"""Registries that fill themselves: a plug-in registers by decorating its class.

A registry knows the package its plug-ins live in. The first lookup of a name it does not
hold imports every module of that package (`pkgutil.walk_packages`), so a new model, method,
task or evaluator is found by name as soon as its file exists: there is no import list to keep.

    MODELS = Registry("model", "erase_jax.models")

    @MODELS.register
    class BPR: name = "BPR"; ...

    MODELS.get("bpr")   # case-insensitive; an unknown name raises KeyError listing the known ones

A class may also declare `aliases` (a tuple of older names it is still found by, e.g. the
method `untouched`, once called `original`); `names()` lists only the `name`s.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind (models, methods, tasks, evaluators), by their `name` attribute."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}  # alias -> name (lower case)
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: makes `cls` findable by `cls.name` (case-insensitive)."""
        key = cls.name.lower()
        other = self._classes.get(key)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"two {self.kind}s are named {cls.name!r}: {other.__module__} and {cls.__module__}")
        self._classes[key] = cls
        for alias in getattr(cls, "aliases", ()):
            self._aliases[alias.lower()] = key
        return cls

    def unregister(self, name: str) -> None:
        """Forgets a plug-in (tests that register a temporary one clean up with this)."""
        self._classes.pop(str(name).lower(), None)

    def load_all(self) -> None:
        """Imports every module of the package once (each registers its plug-ins)."""
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)

    def get(self, name: str) -> type[T]:
        key = str(name).lower()
        if key not in self._classes and key not in self._aliases:
            self.load_all()
        key = self._aliases.get(key, key) if key not in self._classes else key
        try:
            return self._classes[key]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {self.names()}") from None

    def names(self) -> list[str]:
        self.load_all()
        return sorted(cls.name for cls in self._classes.values())

    def aliases(self) -> list[str]:
        """The older names that are still found (`aliases` of the classes), lower case."""
        self.load_all()
        return sorted(self._aliases)

    def classes(self) -> list[type[T]]:
        self.load_all()
        return [self._classes[key] for key in sorted(self._classes)]
