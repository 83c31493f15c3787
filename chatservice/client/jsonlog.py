"""``--json-log FILE``: a transcript of the JSON lines exchanged with the server.

One JSON object a line, appended to the file::

    {"time": 1795282200.5, "direction": "sent", "message": {"type": "whoelse", "id": 2}}

``direction`` is ``sent`` or ``received``; ``time`` comes from the clock the
client runs on.  Passwords (``password`` anywhere, ``old`` and ``new`` of
``passwd``) are written as ``"***"``.  The ``message`` of a SCRAM-SHA-256
``salt`` or ``login`` is written as it is: it holds nonces, the salt, the
proof and the server's signature, never the password nor the salted password
derived from it (which the client never writes anywhere).
"""

from __future__ import annotations

import json
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime

SECRET_FIELDS = {"password"}
SECRET_FIELDS_OF = {"passwd": {"old", "new"}}
"""Fields that hold a password only in requests of one type."""


class JsonTranscript:
    """Appends each message to ``stream``.

    :param stream: a text file open for appending; closed by :meth:`close`.
    :param clock: where the times come from.
    """

    def __init__(self, stream: IO[str], clock: IReactorTime) -> None:
        self.stream: IO[str] | None = stream
        self.clock = clock

    def sent(self, message: dict[str, Any]) -> None:
        self._record("sent", message)

    def received(self, message: dict[str, Any]) -> None:
        self._record("received", message)

    def _record(self, direction: str, message: dict[str, Any]) -> None:
        if self.stream is None:
            return
        secret = SECRET_FIELDS | SECRET_FIELDS_OF.get(str(message.get("type")), set())
        shown = {k: ("***" if k in secret else v) for k, v in message.items()}
        entry = {"time": self.clock.seconds(), "direction": direction, "message": shown}
        self.stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
