"""Telnet negotiation on a person's connection (StringTransport): Ctrl-C, echo at password prompts, refusals.

Two kinds of client: one that speaks telnet (it answers ``WILL ECHO`` with
``DO ECHO`` as ``telnet`` does) and ``nc``, which answers nothing.
"""

from __future__ import annotations

import random
import time

from twisted.trial import unittest

from chatservice.server.lines import TOO_LONG, LineBuffer
from tests.support import ChatHarness, Connection, stored_account
from tests.test_protocol import HarnessTestCase

IAC = b"\xff"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
IP, AYT, NOP = b"\xf4", b"\xf6", b"\xf1"
ECHO, SGA, TM, TTYPE = b"\x01", b"\x03", b"\x06", b"\x18"
ECHO_OFF = IAC + WILL + ECHO
ECHO_ON = IAC + WONT + ECHO


class TelnetTestCase(HarnessTestCase):
    harness_options = {"allow_register": True}

    def answer(self, connection: Connection, data: bytes) -> None:
        """The client's telnet answers, alone in a packet."""
        connection.protocol.dataReceived(data)


class TimingMarkTests(TelnetTestCase):
    def test_ctrl_c_is_answered_and_cancels_the_line(self) -> None:
        yoda = self.connect()
        yoda.login("yoda")
        hans = self.connect()
        hans.login("hans")
        yoda.raw_output()
        # Half a line, then Ctrl-C as telnet sends it: IAC IP, IAC DO TIMING-MARK.
        yoda.protocol.dataReceived(b"message hans I am typ" + IAC + IP + IAC + DO + TM)
        self.assertEqual(yoda.raw_output(), b"\r\n" + IAC + WILL + TM)
        # The session goes on; the cancelled half line was never sent.
        yoda.send("message hans hello")
        self.assertEqual(hans.lines(), ["yoda: hello"])
        self.assertEqual(yoda.lines(), ["Message delivered to hans."])
        # Every Ctrl-C is answered, not just the first.
        yoda.protocol.dataReceived(IAC + IP + IAC + DO + TM)
        self.assertEqual(yoda.raw_output(), b"\r\n" + IAC + WILL + TM)
        yoda.send("message hans again")
        self.assertEqual(hans.lines(), ["yoda: again"])

    def test_ctrl_c_at_a_prompt_asks_again(self) -> None:
        connection = self.connect()
        connection.protocol.dataReceived(b"yod" + IAC + IP + IAC + DO + TM)
        self.assertEqual(connection.raw_output(), b"\r\nUsername: " + IAC + WILL + TM)
        connection.send("yoda")
        self.assertEqual(connection.output(), "Password: ")
        connection.protocol.dataReceived(IAC + IP)
        self.assertEqual(connection.output(), "\r\nPassword: ")
        connection.send("wise")
        self.assertIn("Welcome to chatservice, yoda!", connection.output())

    def test_a_command_split_across_packets(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        for piece in (b"who", IAC, DO + TM, b"else\r\n"):
            connection.protocol.dataReceived(piece)
        self.assertEqual(connection.raw_output(), IAC + WILL + TM + b"No other users are online.\r\n")

    def test_are_you_there(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        connection.protocol.dataReceived(IAC + AYT)
        self.assertEqual(connection.output(), "\r\n[yes]\r\n")


class RefusalTests(TelnetTestCase):
    def test_other_options_are_refused(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        connection.protocol.dataReceived(IAC + DO + SGA + IAC + WILL + TTYPE + IAC + DO + b"\x1f")
        self.assertEqual(
            connection.raw_output(), IAC + WONT + SGA + IAC + DONT + TTYPE + IAC + WONT + b"\x1f"
        )
        # Said again, an option already refused gets the same answer.
        connection.protocol.dataReceived(IAC + DO + SGA)
        self.assertEqual(connection.raw_output(), IAC + WONT + SGA)

    def test_subnegotiation_and_odd_bytes_are_not_text(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        # A sub-negotiation, IAC NOP, an IAC followed by no command, IAC SE alone.
        connection.send(
            b"who" + IAC + b"\xfa\x18\x00xterm" + IAC + b"\xf0" + IAC + NOP + b"el" + IAC + b"A"
            + IAC + b"\xf0se"
        )
        self.assertEqual(connection.lines(), ["No other users are online."])
        # An empty one (Twisted's own handling raised IndexError: found by bench.soak).
        connection.send(b"who" + IAC + b"\xfa" + IAC + b"\xf0else")
        self.assertEqual(connection.lines(), ["No other users are online."])

    def test_a_sub_negotiation_that_never_ends(self) -> None:
        """Past the cap (512 bytes) it is dropped with the rest of its packet; the connection goes on.

        Found by ``python3 -m bench.soak``: Twisted's telnet parser closes the
        connection through a transport this layer has not, and its assertion
        escaped as an unhandled error that cost the connection.
        """
        connection = self.connect()
        connection.login("yoda")
        connection.protocol.dataReceived(IAC + b"\xfa\x18" + b"x" * 400)
        connection.protocol.dataReceived(b"y" * 200 + b"\r\n")
        self.assertFalse(connection.transport.disconnecting)
        connection.send("whoelse")
        self.assertEqual(connection.lines(), ["No other users are online."])
        # Escaped bytes (IAC IAC) inside it count too; so does one in a single packet.
        connection.protocol.dataReceived(IAC + b"\xfa\x18" + IAC + IAC + b"z" * 5000)
        connection.send("whoelse")
        self.assertEqual(connection.lines(), ["No other users are online."])

    def test_commands_of_a_packet_are_bounded(self) -> None:
        """At most 64 commands of one packet are handled; the rest of a packet with more is dropped."""
        connection = self.connect()
        connection.login("yoda")
        connection.protocol.dataReceived((IAC + AYT) * 100 + b"who\r\n")
        self.assertEqual(connection.raw_output(), b"\r\n[yes]\r\n" * 64)
        # The next packet has its own 64, and its text.
        connection.protocol.dataReceived((IAC + AYT) * 2 + b"whoelse\r\n")
        self.assertEqual(connection.raw_output(), b"\r\n[yes]\r\n" * 2 + b"No other users are online.\r\n")

    def test_bytes_that_are_not_lines_cost_little(self) -> None:
        """A megabyte of ``IAC NOP``, or of random bytes without a newline, takes the server
        milliseconds, not the half second Twisted's byte-at-a-time parser took: one client
        sending them without end held up everyone (found by ``bench.soak``'s garbage)."""
        connection = self.connect()
        rng = random.Random(15)
        packets = [(IAC + NOP) * 32768] * 8 + [rng.randbytes(65536).replace(b"\n", b"-") for _ in range(8)]
        started = time.process_time()
        for packet in packets:
            connection.protocol.dataReceived(packet)
        self.assertLess(time.process_time() - started, 0.15)
        self.assertFalse(connection.transport.disconnecting)

    def test_any_commands_in_any_packets(self) -> None:
        """400 seeded sequences of telnet commands (every command, negotiations of a few
        options, sub-negotiations whole, empty or cut off), words and random bytes, in
        packets of any make-up and with time passing, at the prompts and after: nothing
        raises (two of Twisted's assertions and an IndexError did, each an unhandled
        error that cost the connection; found by ``bench.soak``)."""
        commands = (
            [IAC + bytes([byte]) for byte in range(0xEF, 0x100)]
            + [IAC + verb + option for verb in (WILL, WONT, DO, DONT) for option in (ECHO, SGA, TM, TTYPE, b"\x1f")]
            + [IAC + b"\xfa\x18\x00xterm" + IAC + b"\xf0", IAC + b"\xfa" + IAC + b"\xf0", IAC + b"\xfa", IAC]
        )
        words = [b"yoda\r\n", b"wise\r\n", b"whoelse\r\n", b"passwd\r\n", b"\r\n", b"x", b"\r", b"\x00"]
        for seed in range(400):
            rng = random.Random(seed)
            harness = ChatHarness(allow_register=True)
            connection = harness.connect()
            for _ in range(rng.randint(1, 30)):
                packet = b"".join(
                    rng.choice(commands) if rng.random() < 0.6 else rng.choice(words)
                    for _ in range(rng.randint(1, 12))
                )
                if rng.random() < 0.1:
                    packet += rng.randbytes(rng.randint(1, 3000))
                connection.protocol.dataReceived(packet)
                harness.clock.advance(rng.choice([0, 0.1, 1]))
            harness.close_all(connection)

    def test_commands_inside_lines_are_not_text(self) -> None:
        """Each is taken out of the stream before the line is read (refusals aside)."""
        connection = self.connect()
        connection.login("yoda")
        lines = [
            IAC + WILL + ECHO + b"who" + IAC + DONT + b"\x22else",
            IAC + b"\xfa\x18\x00xterm-256color" + IAC + b"\xf0whoelse",
            b"who" + IAC + b"\xfa\x1f\x00\x50\x00\x18" + IAC + b"\xf0else",
            *(b"who" + IAC + command + b"else" for command in (NOP, b"\xf2", b"\xf9", b"\xef")),
            b"whoelse" + IAC,  # IAC before the CR: not a command
        ]
        for line in lines:
            connection.send(line)
            output = connection.raw_output()
            self.assertTrue(output.endswith(b"No other users are online.\r\n"), (line, output))
        connection.send(b"who" + IAC + IAC + b"else")  # a data byte 255: not UTF-8
        self.assertEqual(
            connection.lines(), ["Error. That line was not valid UTF-8 and was ignored."]
        )

    def test_a_json_client_is_never_negotiated_with(self) -> None:
        connection = self.connect()
        connection.login_json("yoda")
        connection.send(b'{"type": "whoelse", "id": 1}' + IAC + DO + TM, b"\n")
        data = connection.raw_output()
        self.assertNotIn(IAC, data)
        self.assertIn(b'"invalid_json"', data)


class EchoTests(TelnetTestCase):
    def test_telnet_client_echo_off_during_the_password(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        self.assertEqual(connection.raw_output(), ECHO_OFF + b"Password: ")
        self.answer(connection, IAC + DO + ECHO)  # telnet agrees: it stops echoing
        self.assertEqual(connection.raw_output(), b"")
        connection.send("wise")
        # The newline the client did not show, echo back on, then the welcome.
        output = connection.raw_output()
        self.assertTrue(output.startswith(b"\r\n" + ECHO_ON + b"Welcome to chatservice, yoda!"), output)
        self.assertIsNotNone(connection.protocol._telnet)  # WONT ECHO waits for its answer
        self.answer(connection, IAC + DONT + ECHO)
        self.assertIsNone(connection.protocol._telnet)  # answered: nothing under way
        self.assertEqual(connection.raw_output(), b"")
        connection.send("whoelse")
        self.assertEqual(connection.lines(), ["No other users are online."])

    def test_do_echo_while_echo_is_being_switched_off(self) -> None:
        """``DO ECHO`` while the server's ``WONT ECHO`` waits for its answer is ignored.

        Twisted's option state machine asserts that this cannot happen: the
        assertion escaped as an unhandled error that cost the connection
        (found by ``bench.soak``'s telnet flooder).
        """
        connection = self.connect()
        connection.send("yoda")
        self.assertEqual(connection.raw_output(), ECHO_OFF + b"Password: ")
        self.answer(connection, IAC + DO + ECHO)
        connection.send("wise")
        self.assertIn(ECHO_ON, connection.raw_output())
        self.answer(connection, IAC + DO + ECHO)  # not the DONT the WONT asked for
        self.assertEqual(connection.raw_output(), b"")
        self.assertFalse(connection.transport.disconnecting)
        self.answer(connection, IAC + DONT + ECHO)  # the answer, late
        connection.send("whoelse")
        self.assertEqual(connection.lines(), ["No other users are online."])

    def test_wrong_password_then_right(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.raw_output()
        self.answer(connection, IAC + DO + ECHO)
        connection.send("nope")
        # Still a password prompt: the echo stays off.
        self.assertEqual(
            connection.raw_output(), b"\r\nInvalid Password. Please try again\r\nPassword: "
        )
        connection.send("wise")
        self.assertTrue(connection.raw_output().startswith(b"\r\n" + ECHO_ON + b"Welcome"))

    def test_nc_gets_one_offer_and_no_stray_newlines(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        self.assertEqual(connection.raw_output(), ECHO_OFF + b"Password: ")
        connection.send("nope")  # nc answers no negotiation
        self.assertEqual(
            connection.raw_output(), b"Invalid Password. Please try again\r\nPassword: "
        )
        connection.send("wise")
        self.assertTrue(connection.raw_output().startswith(b"Welcome to chatservice, yoda!"))

    def test_idle_layer_dropped_at_login(self) -> None:
        """An idle logged-in connection keeps no telnet layer (about 2 KiB), though no line followed the login."""
        nc = self.connect()
        nc.send("yoda")
        self.assertIsNotNone(nc.protocol._telnet)  # the password prompt made it
        nc.send("wise")
        self.assertIsNone(nc.protocol._telnet)

    def test_idle_layer_dropped_and_nc_not_offered_again(self) -> None:
        nc = self.connect()
        nc.login("yoda")
        nc.send("whoelse")
        self.assertIsNone(nc.protocol._telnet)  # logged in, nothing under way: dropped
        nc.raw_output()
        nc.send("passwd")
        self.assertEqual(nc.raw_output(), b"Old password: ")  # nc left the first offer unanswered

    def test_refused_echo_is_not_offered_again(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        connection.raw_output()
        self.answer(connection, IAC + DONT + ECHO)
        connection.send("nope")
        self.assertEqual(
            connection.raw_output(), b"Invalid Password. Please try again\r\nPassword: "
        )

    def test_registration_prompts(self) -> None:
        connection = self.connect()
        connection.send("newbie")
        self.assertEqual(
            connection.raw_output(),
            b"There is no account newbie.\r\nCreate a new account with that name? (yes/no) ",
        )
        connection.send("yes")
        self.assertEqual(connection.raw_output(), ECHO_OFF + b"New password: ")
        self.answer(connection, IAC + DO + ECHO)
        connection.send("s3cret!")
        self.assertEqual(connection.raw_output(), b"\r\nRepeat the password: ")
        connection.send("s3cret!")
        output = connection.raw_output()
        self.assertTrue(
            output.startswith(b"\r\nAccount newbie created.\r\n" + ECHO_ON + b"Welcome"), output
        )
        self.assertNotIn(b"s3cret", output)

    def test_passwd_prompts(self) -> None:
        connection = self.connect()
        connection.send("yoda")
        self.answer(connection, IAC + DO + ECHO)
        connection.send("wise")
        self.answer(connection, IAC + DONT + ECHO)
        connection.raw_output()
        before = stored_account(self.harness.store, "yoda")
        connection.send("passwd")
        self.assertEqual(connection.raw_output(), ECHO_OFF + b"Old password: ")
        self.answer(connection, IAC + DO + ECHO)
        connection.send("wise")
        self.assertEqual(connection.raw_output(), b"\r\nNew password: ")
        connection.send("wiser")
        self.assertEqual(connection.raw_output(), b"\r\nRepeat the password: ")
        connection.send("wiser")
        self.assertEqual(
            connection.raw_output(), b"\r\n" + ECHO_ON + b"Your password has been changed.\r\n"
        )
        self.assertNotEqual(stored_account(self.harness.store, "yoda"), before)

    def test_passwd_prompts_cancelled_and_mismatched(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        before = stored_account(self.harness.store, "yoda")
        connection.send("passwd")
        connection.send("wise")
        connection.send("one")
        connection.send("two")
        self.assertEqual(
            connection.output(),
            "Old password: New password: Repeat the password: "
            "Error. The passwords differ; try again.\r\nNew password: ",
        )
        connection.protocol.dataReceived(IAC + IP)
        self.assertEqual(
            connection.output(), "\r\nCancelled; your password was not changed.\r\n"
        )
        connection.send("whoelse")  # a command again
        self.assertEqual(connection.lines(), ["No other users are online."])
        self.assertEqual(stored_account(self.harness.store, "yoda"), before)

    def test_passwd_on_one_line_and_json_need_both(self) -> None:
        connection = self.connect()
        connection.login("yoda")
        connection.send("passwd wise")
        self.assertEqual(
            connection.lines(), ["Error. Usage: passwd <old password> <new password>"]
        )
        json_client = self.connect()
        json_client.login_json("hans")
        json_client.send_json({"type": "passwd", "id": 3})
        (reply,) = json_client.json()
        self.assertEqual((reply["type"], reply["code"], reply["id"]), ("error", "bad_argument", 3))


class DropPartialTests(unittest.TestCase):
    """What Ctrl-C drops from the line buffer: the line being typed, never whole lines waiting."""

    def test_whole_lines_stay(self) -> None:
        lines = LineBuffer(100)
        lines.feed(b"one\ntwo\nthr")
        lines.drop_partial()
        lines.feed(b"four\n")
        self.assertEqual([lines.pop(), lines.pop(), lines.pop(), lines.pop()], [b"one", b"two", b"four", None])

    def test_after_a_line_taken(self) -> None:
        lines = LineBuffer(100)
        lines.feed(b"one\npart")
        self.assertEqual(lines.pop(), b"one")
        lines.drop_partial()
        self.assertEqual(lines.pop(), None)
        lines.feed(b"two\n")
        self.assertEqual(lines.pop(), b"two")

    def test_ends_an_over_long_line(self) -> None:
        lines = LineBuffer(4)
        lines.feed(b"toolong")
        self.assertEqual(lines.pop(), TOO_LONG)
        lines.drop_partial()  # what follows is a new line, not the rest of that one
        lines.feed(b"ok\n")
        self.assertEqual(lines.pop(), b"ok")
