"""Named entries of one kind (timm style): register with a decorator or a call, look up by name.

Every registry of fastinv (backbones, checkpoint formats, datasets, evaluation suites) is one of
these, so an unknown name is always the same error: a UsageError listing the valid names.
"""
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from fastinv.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one `kind` ("dataset", "suite", ...) by unique name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name, entry=None):
        """Register `entry` under `name` and return it; without `entry`, a decorator that does so.

        A name can be registered once; a second registration is a programming error (ValueError)."""
        def add(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = target
            return target
        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        """The entry called `name`; UsageError listing the valid names otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(f"unknown {self.kind} {name!r}; valid: {', '.join(self._entries)}") from None

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return iter(self._entries.items())
