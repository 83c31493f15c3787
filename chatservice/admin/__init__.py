"""Administration of a chat server: the actions of ``chatservice-admin`` and the admin socket.

- :mod:`chatservice.admin.actions`: :class:`~chatservice.admin.actions.AdminActions`,
  the one implementation of every action, on top of the store (and of the
  running server's memory when it runs inside one);
- :mod:`chatservice.admin.socket`: the UNIX socket a running server listens
  on (``admin.sock`` in its data directory), carrying those actions as JSON lines;
- :mod:`chatservice.tools.admin`: the ``chatservice-admin`` command, which
  uses the socket when the server runs and the store itself otherwise.
"""
