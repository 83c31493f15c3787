"""The ``twistd chat`` plugin."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "chat",
    "chatservice.tap",
    "A chat server: telnet-friendly text commands and JSON lines on one port.",
    "chat",
)
