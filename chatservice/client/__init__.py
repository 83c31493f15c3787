"""The terminal client: ``chat-client HOST PORT`` (or ``python -m chatservice.client``).

It talks to the server in JSON lines (:mod:`.server_connection`), reads the
keyboard or a script on standard input (:mod:`.console`), and talks to other
clients directly: private chats over TCP (:mod:`.peer`, :mod:`.private`) and
file transfers over UDP (:mod:`.transfers`, :mod:`.filetransfer`,
:mod:`.udpwire`).  :mod:`.app` ties them together; :mod:`.main` parses the
options and runs it.
"""
