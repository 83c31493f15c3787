"""A bad network on purpose: a datagram writer that drops, duplicates and reorders.

:class:`LossyWriter` wraps any ``write(datagram, address)`` function.  Tests
put it around a fake network on a ``Clock``; ``chat-client --udp-loss`` puts
it around the real UDP port, to watch a file transfer survive a poor network.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

Address = tuple[str, int]


class LossyWriter:
    """Forwards datagrams to ``write``, dropping, duplicating and delaying some.

    :param write: where surviving datagrams go.
    :param clock: for the delays that reorder datagrams.
    :param rng: the source of chance (seed it for a repeatable test).
    :param loss: fraction of datagrams dropped.
    :param duplicate: fraction of datagrams sent twice.
    :param reorder: fraction of datagrams held back by up to ``max_delay``
        seconds, so later ones overtake them.
    """

    def __init__(
        self,
        write: Callable[[bytes, Address], object],
        clock: IReactorTime,
        rng: random.Random,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        max_delay: float = 0.005,
    ) -> None:
        self.write = write
        self.clock = clock
        self.rng = rng
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.max_delay = max_delay
        self.sent = self.dropped = self.duplicated = self.delayed = 0
        self._pending: dict[int, IDelayedCall] = {}
        self._next_key = 0

    def __call__(self, datagram: bytes, address: Address) -> None:
        self.sent += 1
        rng = self.rng
        if rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            self.duplicated += 1
            copies = 2
        for _ in range(copies):
            if rng.random() < self.reorder:
                self.delayed += 1
                self._next_key += 1
                self._pending[self._next_key] = self.clock.callLater(
                    rng.uniform(0, self.max_delay),
                    self._deliver,
                    self._next_key,
                    datagram,
                    address,
                )
            else:
                self.write(datagram, address)

    def _deliver(self, key: int, datagram: bytes, address: Address) -> None:
        del self._pending[key]
        self.write(datagram, address)

    def stop(self) -> None:
        """Drop the datagrams still held back (cancels their timers)."""
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if call.active():
                call.cancel()
