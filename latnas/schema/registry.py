"""A tiny named registry used for ops, spaces, backends, predictors and algorithms."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from latnas.schema.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; ``register`` works as a decorator.

    ``loader``, if given, is called once before the first lookup or listing to
    register built-in entries whose modules are too heavy to import eagerly
    (e.g. torch-backed ops). It must register through ``register``.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None  # cleared first: the loader re-enters register()
            loader()

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""

        def _add(o: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        return _add(obj) if obj is not None else _add

    def named(self, name: str):
        """Class decorator: register a class under ``name`` and set its ``name`` attribute."""

        def deco(cls):
            cls.name = name
            self.register(name, cls)
            return cls

        return deco

    def create(self, name: str, error: type[Exception], **opts):
        """An instance of the class registered as ``name``; bad constructor options become one-line ``error``."""
        cls = self.get(name)
        try:
            return cls(**opts)
        except (TypeError, ValueError) as exc:
            raise error(f"{self.kind} {name!r}: bad options: {' '.join(str(exc).split())}") from None

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)


def lazy(factory: Callable[[], T]) -> Callable[[], T]:
    """Memoise a zero-argument factory (for registries filled on first use)."""
    cache: list[T] = []

    def get() -> T:
        if not cache:
            cache.append(factory())
        return cache[0]

    return get
