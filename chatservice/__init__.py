"""chatservice: a chat server and client built on Twisted.

The package is laid out by layer:

- :mod:`chatservice.events` and :mod:`chatservice.commands`: what the server
  says and what a client may ask, as plain data.
- :mod:`chatservice.wire`: the two wire formats (text for humans, JSON lines
  for programs); pure parsing and rendering, no I/O.
- :mod:`chatservice.state`: the shared chat state (who is online, blocks,
  offline messages, login history); no transports.
- :mod:`chatservice.store`: where the state keeps what must outlive a session.
- :mod:`chatservice.auth`: accounts, the ``twisted.cred`` checker and realm,
  and the login lock-out.
- :mod:`chatservice.server`: the connection layer (transport adapter, login dialogues, output).
- :mod:`chatservice.tap`: the ``twistd chat`` options and service wiring.
"""

__version__ = "0.1.0"
