"""Questions to the user: another user offers a private chat or a file; ``accept`` or ``decline``.

:meth:`Offers.ask` puts a question and returns a Deferred that fires with
:data:`ACCEPT` when the user types ``accept``, :data:`DECLINE` for
``decline``, or :data:`TIMEOUT` once :data:`ANSWER_TIMEOUT` seconds pass
without an answer (it is then declined, and the user told).  ``accept`` and ``decline`` take the user's name; without
it they answer the oldest question.  Nothing is accepted without a question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

ANSWER_TIMEOUT = 20.0
"""Seconds the user has to answer; less than the 30 s a file's sender waits for an answer."""

ACCEPT = "accept"
DECLINE = "decline"
TIMEOUT = "timeout"


@dataclass
class Offer:
    """One open question: ``user`` offers ``what`` (``a private chat``, ``notes.txt (1.2 kB)``)."""

    user: str
    what: str
    answer: defer.Deferred[str]
    timer: IDelayedCall


class Offers:
    """The open questions, oldest first.

    :param clock: for the answer timeout.
    :param tell: shows a line to the user.
    :param timeout: seconds to answer.
    """

    def __init__(
        self, clock: IReactorTime, tell: Callable[[str], None], timeout: float = ANSWER_TIMEOUT
    ) -> None:
        self.clock = clock
        self.tell = tell
        self.timeout = timeout
        self.open: list[Offer] = []

    def ask(self, user: str, what: str) -> defer.Deferred[str]:
        """Ask whether to accept ``what`` from ``user``; fires with the answer (:data:`ACCEPT`, ...)."""
        answer: defer.Deferred[str] = defer.Deferred()
        offer = Offer(user, what, answer, self.clock.callLater(self.timeout, self._expired, answer))
        self.open.append(offer)
        return answer

    def find(self, user: str | None) -> Offer | None:
        """The oldest open offer (of ``user``), if any."""
        for offer in self.open:
            if user is None or offer.user.lower() == user.lower():
                return offer
        return None

    def answer(self, offer: Offer, accept: bool) -> None:
        """The user typed ``accept`` or ``decline`` for ``offer``."""
        if offer in self.open:
            self._close(offer)
            offer.answer.callback(ACCEPT if accept else DECLINE)

    def close_all(self) -> None:
        """Decline every open question (the client is quitting)."""
        while self.open:
            offer = self.open[0]
            self._close(offer)
            offer.answer.callback(DECLINE)

    def _close(self, offer: Offer) -> None:
        self.open.remove(offer)
        if offer.timer.active():
            offer.timer.cancel()

    def _expired(self, answer: defer.Deferred[str]) -> None:
        for offer in self.open:
            if offer.answer is answer:
                self.open.remove(offer)
                self.tell(
                    f"No answer within {self.timeout:g} s: declined {offer.what} from {offer.user}."
                )
                answer.callback(TIMEOUT)
                return
