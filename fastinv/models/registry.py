"""A small decorator registry (timm style): add an entry with one decorated function."""
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fastinv.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; unknown names raise a UsageError listing the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under `name` (names are unique)."""
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry
        return add

    def get(self, name: str) -> T:
        """Return the entry `name`; raise UsageError listing the valid names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(f"unknown {self.kind} {name!r}; valid: {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())
