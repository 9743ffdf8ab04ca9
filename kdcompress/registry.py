"""Named registries of components; registering a name twice is an error."""
from __future__ import annotations

from typing import Callable, Dict, Iterator

from .errors import KDError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        def add(obj: Callable) -> Callable:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj
        return add

    def get(self, name: str) -> Callable:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise KDError(f"unknown {self.kind} '{name}' (known: {known})")
        return self._items[name]

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


TEACHERS = Registry("teacher architecture")
SCORES = Registry("teacher score")
STUDENTS = Registry("student")
METHODS = Registry("distillation method")
EXPORTERS = Registry("export target")
