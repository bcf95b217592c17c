"""Name -> function tables for the algorithm knobs (advantage estimators, policy surrogates, aggregation modes,
KL estimators), with each entry's paper and equation as data.

Each table lives beside the functions it holds (``rl/advantages.py``, ``rl/losses.py``); the trainer, config
validation, ``toyrlhf algos`` and the exact engine all look names up here, so a new estimator is one decorated
function plus its tests:

    @ADVANTAGE_ESTIMATORS.register("my_baseline", paper="...", equation="A_i = r_i - b")
    def my_baseline(rewards, G, hp): ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping


@dataclass(frozen=True)
class Entry:
    """One registered function and the facts about it that code and tables read."""

    name: str
    """The knob value that selects it (e.g. ``advantage="rloo"``)."""
    fn: Callable
    """The function, with the signature its registry documents."""
    paper: str
    """Where it comes from (authors, year, section or equation)."""
    equation: str
    """The equation it implements, in one line of plain text."""
    needs_critic: bool = False
    """True if it reads a learned value function (PPO's critic)."""
    data: Mapping = field(default_factory=dict)
    """Kind-specific facts (e.g. an estimator's level, or its closed-form expectation for the exact engine)."""

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __getattr__(self, key):
        # registry-specific facts read as attributes: entry.level, entry.scope, ...
        try:
            return self.__dict__["data"][key]
        except KeyError:
            raise AttributeError(f"{self.name!r} has no {key!r}") from None


class Registry(Mapping[str, Entry]):
    """An ordered name -> Entry table; ``lookup`` raises a one-line ValueError naming the choices."""

    def __init__(self, kind: str, defaults: Mapping | None = None):
        self.kind = kind
        self._defaults = dict(defaults or {})
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, paper: str, equation: str, needs_critic: bool = False, **data):
        """Decorator: add `fn` under `name` (a name may be registered once)."""
        unknown = set(data) - set(self._defaults)
        if unknown:
            raise TypeError(f"{self.kind} registry: unknown fact(s) {sorted(unknown)}; known {sorted(self._defaults)}")

        def deco(fn: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, fn, paper, equation, needs_critic, {**self._defaults, **data})
            return fn

        return deco

    def remove(self, name: str) -> None:
        """Take `name` out again (a test's or a notebook's temporary entry)."""
        del self._entries[name]

    def lookup(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __getitem__(self, name: str) -> Entry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
