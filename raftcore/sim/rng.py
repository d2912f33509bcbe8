"""A small deterministic pseudo-random generator for the simulator.

The simulator may not touch global randomness (``random`` is off limits under
``raftcore/``), and its traces must replay bit for bit on every Python
version, so it carries its own generator: SplitMix64 on Python ints. It is
fast enough in pure Python, passes BigCrush as a 64-bit generator, and its
whole state is one integer.

``fork(label)`` derives an independent child stream from the parent's *seed
key* and the label (not from the parent's current position), so adding a draw
in one component never shifts the random choices of another: the network,
each node's storage and each engine get their own forks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import MutableSequence, Sequence
from typing import TypeVar

__all__ = ["Rng"]

T = TypeVar("T")

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TWO_POW_53_INV = 1.0 / (1 << 53)


def _key_to_seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


class Rng:
    """SplitMix64: ``Rng(seed)`` is a stream fully determined by ``seed``."""

    __slots__ = ("_key", "_state")

    def __init__(self, seed: int | str = 0, *, _key: str | None = None) -> None:
        self._key = _key if _key is not None else f"seed:{seed}"
        self._state = _key_to_seed(self._key)

    @property
    def key(self) -> str:
        """The derivation path of this stream (for debugging)."""
        return self._key

    def __repr__(self) -> str:
        return f"Rng({self._key!r})"

    def fork(self, label: object) -> Rng:
        """An independent stream named ``label`` under this one's seed key."""
        return Rng(_key=f"{self._key}/{label}")

    def next_u64(self) -> int:
        self._state = s = (self._state + _GOLDEN) & _MASK
        s = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        s = ((s ^ (s >> 27)) * 0x94D049BB133111EB) & _MASK
        return s ^ (s >> 31)

    def random(self) -> float:
        """A float in ``[0, 1)`` with 53 random bits."""
        return (self.next_u64() >> 11) * _TWO_POW_53_INV

    def uniform(self, a: float, b: float) -> float:
        """A float in ``[a, b)`` (``a`` when ``a == b``)."""
        return a + (b - a) * self.random()

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return p > 0.0 and self.random() < p

    def randint(self, a: int, b: int) -> int:
        """An int in ``[a, b]``, both ends included, without modulo bias."""
        if b < a:
            raise ValueError(f"empty range [{a}, {b}]")
        n = b - a + 1
        if n > _MASK:
            raise ValueError("range too large")
        limit = ((_MASK + 1) // n) * n
        while True:
            x = self.next_u64()
            if x < limit:
                return a + x % n

    def expovariate(self, mean: float) -> float:
        """An exponentially distributed float with the given mean."""
        return -math.log(1.0 - self.random()) * mean

    def choice(self, seq: Sequence[T]) -> T:
        if not seq:
            raise IndexError("choice from an empty sequence")
        return seq[self.randint(0, len(seq) - 1)]

    def shuffle(self, items: MutableSequence[T]) -> None:
        """Shuffle in place (Fisher-Yates)."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randint(0, i)
            items[i], items[j] = items[j], items[i]

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """``k`` distinct elements of ``seq`` in random order."""
        if not 0 <= k <= len(seq):
            raise ValueError(f"sample of {k} from {len(seq)} elements")
        pool = list(seq)
        self.shuffle(pool)
        return pool[:k]
