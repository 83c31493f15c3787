"""chat-client's options, and opening its peer ports (on 127.0.0.1)."""

from __future__ import annotations

import io
import socket
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from chatservice.client import main
from chatservice.client.app import ChatClient
from chatservice.client.console import Output, TerminalEcho
from chatservice.client.lossy import LossyWriter


class OptionsTests(unittest.TestCase):
    def setUp(self) -> None:
        temporary = tempfile.TemporaryDirectory(prefix="chat-client-options-")
        self.addCleanup(temporary.cleanup)
        self.directory = Path(temporary.name)
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *argv: str) -> main.Options:
        return main.parse_options(argv)

    def test_defaults(self) -> None:
        options = self.parse("127.0.0.1", "4119")
        self.assertEqual((options["host"], options["port"]), ("127.0.0.1", 4119))
        self.assertEqual(options["p2p-port"], 0)
        self.assertIsNone(options["p2p-interface"])
        self.assertEqual(options["download-dir"], Path("."))
        self.assertIsNone(options["json-log"])
        self.assertEqual(options["udp-loss"], 0.0)
        self.assertFalse(options["password-login"])
        self.assertTrue(self.parse("127.0.0.1", "4119", "--password-login")["password-login"])
        self.assertFalse(options["no-color"] or options["line-mode"])
        both = self.parse("127.0.0.1", "4119", "--no-color", "--line-mode")
        self.assertTrue(both["no-color"] and both["line-mode"])

    def test_options_before_or_after_host_and_port(self) -> None:
        downloads = self.directory / "new" / "downloads"
        for argv in (
            ("--p2p-port", "6000", f"--download-dir={downloads}", "localhost", "4119"),
            ("localhost", "4119", "--p2p-port", "6000", "--download-dir", str(downloads)),
            ("localhost", "--p2p-port=6000", "4119", "--download-dir", str(downloads)),
        ):
            options = self.parse(*argv)
            self.assertEqual((options["host"], options["port"], options["p2p-port"]), ("localhost", 4119, 6000))
            self.assertEqual(options["download-dir"], downloads)
        self.assertTrue(downloads.is_dir())

    def assertUsageError(self, *argv: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*argv)
        self.assertEqual(caught.exception.code, 2)
        message = self.stderr.getvalue()
        self.stderr.truncate(0)
        self.stderr.seek(0)
        self.assertIn("Run 'chat-client --help' for the options.", message)
        return message

    def test_bad_options(self) -> None:
        self.assertIn("Wrong number of arguments", self.assertUsageError())
        self.assertIn("Wrong number of arguments", self.assertUsageError("127.0.0.1"))
        self.assertIn("PORT must be a port number", self.assertUsageError("127.0.0.1", "x"))
        self.assertIn("PORT must be between 1 and 65535", self.assertUsageError("127.0.0.1", "0"))
        self.assertIn("--p2p-port must be between 0", self.assertUsageError("h", "1", "--p2p-port", "70000"))
        self.assertIn("--udp-loss must be between", self.assertUsageError("h", "1", "--udp-loss", "0.9"))
        self.assertIn("--udp-loss must be a number", self.assertUsageError("h", "1", "--udp-loss", "lots"))
        self.assertIn("not recognized", self.assertUsageError("h", "1", "--bogus"))
        self.assertIn("requires argument", self.assertUsageError("h", "1", "--json-log"))
        blocker = self.directory / "file"
        blocker.write_text("x")
        self.assertIn("--download-dir", self.assertUsageError("h", "1", "--download-dir", str(blocker / "sub")))

    def test_help_documents_the_options(self) -> None:
        text = str(main.Options())
        for option in (
            "--p2p-port", "--download-dir", "--json-log", "--p2p-interface", "--udp-loss",
            "--password-login", "--no-color", "--line-mode",
        ):
            self.assertIn(option, text)
        self.assertIn("Usage: chat-client HOST PORT [options]", text)
        self.assertIn("Exit status", text)

    def test_server_endpoint(self) -> None:
        endpoint = main.server_endpoint(reactor, self.parse("127.0.0.1", "4119"))
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_crash_report(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            main._report_crash(Failure(ZeroDivisionError("boom")))
        self.assertEqual(caught.exception.code, 1)
        self.assertIn("chat-client: internal error", self.stderr.getvalue())
        self.assertIn("ZeroDivisionError", self.stderr.getvalue())
        exiting = Failure(SystemExit(3))
        self.assertIs(main._report_crash(exiting), exiting)


class ListenTests(unittest.TestCase):
    """The peer ports, opened with the real reactor on 127.0.0.1."""

    def setUp(self) -> None:
        temporary = tempfile.TemporaryDirectory(prefix="chat-client-listen-")
        self.addCleanup(temporary.cleanup)
        self.client = ChatClient(
            reactor,
            Output(lambda data: None, terminal=False, interactive=False),
            TerminalEcho(0, False),
            download_dir=Path(temporary.name),
            connect_peer=lambda host, port, protocol: defer.fail(Exception()),
        )
        self.lossy: list[LossyWriter] = []

    def options(self, *extra: str) -> main.Options:
        return main.parse_options(["127.0.0.1", "1", *extra])

    def test_the_interface_is_the_one_that_reaches_the_server(self) -> None:
        # Issue 15, item 10: the peer ports listened on every interface.
        server = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.5", 40123))
        self.assertEqual(main.peer_interface(self.options(), server), "127.0.0.5")
        self.assertEqual(main.peer_interface(self.options("--p2p-interface", "0.0.0.0"), server), "0.0.0.0")

    @defer.inlineCallbacks
    def test_listens_only_on_the_address_given(self):
        ports = main.listen_for_peers(reactor, self.options(), self.client, self.lossy, "127.0.0.1")
        try:
            number = ports[0].getHost().port
            with socket.socket() as other:
                other.settimeout(5)
                self.assertNotEqual(other.connect_ex(("127.0.0.2", number)), 0)
        finally:
            for port in ports:
                yield port.stopListening()

    @defer.inlineCallbacks
    def test_tcp_and_udp_share_a_port_number(self):
        ports = main.listen_for_peers(reactor, self.options(), self.client, self.lossy, "127.0.0.1")
        try:
            tcp, udp = ports
            self.assertEqual(tcp.getHost().port, udp.getHost().port)
            self.assertEqual((tcp.getHost().host, udp.getHost().host), ("127.0.0.1", "127.0.0.1"))
            self.assertEqual(self.lossy, [])
        finally:
            for port in ports:
                yield port.stopListening()

    @defer.inlineCallbacks
    def test_udp_falls_back_to_any_port(self):
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        number = taken.getsockname()[1]
        try:
            ports = main.listen_for_peers(
                reactor, self.options("--p2p-port", str(number), "--udp-loss", "0.1"), self.client, self.lossy,
                "127.0.0.1",
            )
        except CannotListenError:
            raise unittest.SkipTest(f"TCP port {number} is taken too")
        try:
            tcp, udp = ports
            self.assertEqual(tcp.getHost().port, number)
            self.assertNotEqual(udp.getHost().port, number)
            self.assertEqual(len(self.lossy), 1)
        finally:
            for port in ports:
                yield port.stopListening()

    def test_lossy_wrapper_only_when_asked(self) -> None:
        self.assertIsNone(main.lossy_wrapper(reactor, 0.0, self.lossy))
        wrap = main.lossy_wrapper(reactor, 0.2, self.lossy)
        writer = wrap(lambda datagram, address: None)
        self.assertEqual((writer.loss, writer.duplicate, writer.reorder), (0.2, 0.2, 0.2))
        self.assertEqual(self.lossy, [writer])
