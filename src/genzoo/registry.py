"""One registry mechanism for models and datasets: ``@models.register("nade")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from genzoo.errors import GenzooError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a public name to a class or factory; unknown names fail with the list of valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            if isinstance(entry, type):
                entry.name = name  # a registered class knows its public name (run configs record it)
            return entry

        return decorate

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise GenzooError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


models: Registry[type] = Registry("model")
datasets: Registry[Callable] = Registry("dataset")
