"""The terminal client: ``chat-client HOST PORT`` (or ``python -m chatservice.client``).

:mod:`.main`
    the options, and wiring the client to the reactor, stdin/stdout and ports
:mod:`.app`
    :class:`~.app.ChatClient`: logging in, typed commands, server messages, exit status
:mod:`.commands`
    typed words to JSON requests (the server's own table) or client actions
:mod:`.server_connection`
    the JSON-lines connection to the server; replies matched by ``id``
:mod:`.render`
    server JSON messages as readable lines: read back into the server's events
    (:mod:`chatservice.wire.json_events`) and worded by its text format
:mod:`.console`
    standard input lines and the screen when input is a pipe (or ``--line-mode``), password echo
:mod:`.inputline`
    the input line on a terminal (insults + ``HistoricRecvLine``): output above it,
    progress bars just above it, history, Tab, Ctrl keys
:mod:`.style`
    time stamps and colours (``NO_COLOR``, ``--no-color``)
:mod:`.offers`
    ``accept``/``decline`` questions for offered private chats and files
:mod:`.peer`, :mod:`.private`
    peer-to-peer private chat: the line protocol, tokens and sessions
:mod:`.udpwire`, :mod:`.filetransfer`, :mod:`.transfers`
    peer-to-peer file transfer over UDP: datagrams, state machines, the port
:mod:`.progress`
    what the user sees of transfers
:mod:`.jsonlog`
    ``--json-log``
:mod:`.lossy`, :mod:`.testing`
    a lossy datagram writer (``--udp-loss``, tests) and test doubles
"""
