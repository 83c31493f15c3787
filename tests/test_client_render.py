"""Server JSON messages as readable lines, in the server's own text wording."""

from __future__ import annotations

from twisted.trial import unittest

from chatservice.client.render import render
from chatservice.timefmt import format_timestamp
from tests.test_json_events import ODD_VALUES, samples

T = 1_795_282_200.5
WHEN = format_timestamp(T)


class RenderTests(unittest.TestCase):
    def check(self, message: dict, *lines: str) -> None:
        self.assertEqual(render(message), list(lines))

    def test_login(self) -> None:
        self.check(
            {"type": "login", "success": True, "user": "yoda", "guest": False},
            "Welcome to chatservice, yoda! Type help for the list of commands.",
        )
        self.check(
            {"type": "login", "success": True, "user": "guest1", "guest": True},
            "Welcome to chatservice, guest1 (guest)! Type help for the list of commands.",
        )
        self.check(
            {"type": "login", "success": False, "reason": "wrong_password",
             "message": "Invalid Password. Please try again"},
            "Invalid Password. Please try again",
        )

    def test_messages(self) -> None:
        self.check({"type": "message", "from": "hans", "message": "Hi", "timestamp": T, "offline": False}, "hans: Hi")
        self.check(
            {"type": "message", "from": "hans", "message": "Hi", "timestamp": T, "offline": True},
            f"[offline {WHEN}] hans: Hi",
        )
        self.check({"type": "broadcast", "from": "hans", "message": "all", "timestamp": T, "seq": 3}, "[broadcast] hans: all")
        self.check({"type": "room_message", "room": 2, "from": "luke", "message": "yo"}, "[room 2] luke: yo")

    def test_message_status(self) -> None:
        self.check({"type": "message_status", "to": "hans", "stored": False}, "Message delivered to hans.")
        self.check(
            {"type": "message_status", "to": "hans", "stored": True},
            "hans is offline; your message will be delivered when they log in.",
        )
        self.check(
            {"type": "message_status", "to": "hans", "stored": True, "busy": True, "auto_reply": "brb"},
            "hans is busy; your message will be delivered when they are available.",
            "Auto-reply from hans: brb",
        )

    def test_broadcast_and_send_status(self) -> None:
        self.check(
            {"type": "broadcast_status", "seq": 3, "timestamp": T, "delivered": 1, "skipped": 1,
             "auto_replies": [{"user": "luke", "message": "away"}]},
            f"Broadcast message, #3 broadcast at {WHEN}",
            "Your broadcast could not be delivered to some recipients as they have blocked you.",
            "Auto-reply from luke: away",
        )
        # Without its number and time it cannot be worded: shown as it came.
        self.check(
            {"type": "broadcast_status", "delivered": 0, "skipped": 0},
            '[broadcast_status] {"delivered": 0, "skipped": 0}',
        )
        self.check(
            {"type": "send_status", "delivered": ["hans", "luke"], "stored": ["leia"],
             "failed": [{"user": "vader", "reason": "no such user"}], "auto_replies": []},
            "Sent to hans, luke.",
            "Kept for leia (offline or busy) until they are back.",
            "Could not send to vader (no such user).",
        )

    def test_user_lists(self) -> None:
        self.check({"type": "userlist", "users": ["hans", "g1"], "guests": ["g1"], "onlinetype": True}, "hans", "g1 (guest)")
        self.check({"type": "userlist", "users": [], "onlinetype": True}, "No other users are online.")
        self.check({"type": "userlist", "users": [], "onlinetype": True, "since": 60}, "No other users were online in the last 60 seconds.")
        self.check({"type": "userlist", "users": [], "onlinetype": False}, "Every other user is online.")
        self.check(
            {"type": "active", "users": [{"user": "hans", "host": "127.0.0.1", "p2p_port": 6666, "since": T},
                                         {"user": "luke", "host": "127.0.0.2", "p2p_port": None, "since": T}]},
            f"hans, 127.0.0.1, 6666, active since {WHEN}",
            f"luke, 127.0.0.2, -, active since {WHEN}",
        )
        self.check({"type": "active", "users": []}, "No other users are active.")
        self.check({"type": "user_notification", "user": "hans", "status": True}, "hans logged in")
        self.check({"type": "user_notification", "user": "hans", "status": False}, "hans logged out")

    def test_history(self) -> None:
        self.check(
            {"type": "history", "after": T, "messages": [
                {"channel": "broadcast", "seq": 3, "from": "yoda", "message": "hi", "timestamp": T},
                {"channel": "room:2", "seq": 1, "from": "hans", "message": "yo", "timestamp": T}]},
            f"#3 broadcast, yoda: hi, posted at {WHEN}",
            f"#1 room 2, hans: yo, posted at {WHEN}",
        )
        self.check({"type": "history", "after": T, "messages": []}, "No new messages.")

    def test_rooms(self) -> None:
        self.check({"type": "room_created", "room": 2, "members": ["hans", "yoda"], "existed": False}, "Room 2 created with hans, yoda.")
        self.check({"type": "room_created", "room": 2, "members": ["hans", "yoda"], "existed": True}, "Room 2 already exists with hans, yoda; use it.")
        self.check({"type": "room_joined", "room": 2, "by": "yoda", "members": ["hans", "yoda"]}, "yoda added you to room 2 with hans, yoda.")
        self.check({"type": "room_posted", "room": 2, "seq": 5, "timestamp": T, "skipped": 0}, f"Room 2 message, #5 sent at {WHEN}")
        self.check({"type": "rooms", "rooms": [{"room": 2, "members": ["hans", "yoda"]}]}, "Room 2: hans, yoda")
        self.check({"type": "rooms", "rooms": []}, "You are in no rooms.")
        self.check({"type": "room_left", "room": 2, "user": "hans", "removed": True}, "hans left room 2. The room was removed as it is empty.")

    def test_status(self) -> None:
        self.check({"type": "status_changed", "status": "busy", "auto_reply": "brb"}, "You are busy. Auto-reply: brb")
        self.check({"type": "status_changed", "status": "hidden"}, "You are hidden: other users do not see you online.")
        self.check({"type": "status_changed", "status": "visible"}, "You are visible again.")
        self.check(
            {"type": "status_changed", "status": "available", "kept": 2, "missed": 3},
            "You are available again. 2 direct message(s) were kept for you (shown above);"
            " you missed 3 broadcast or room message(s) (see read).",
        )
        self.check(
            {"type": "status", "busy": True, "auto_reply": "brb", "hidden": True, "logged_in_at": T, "online_for": 3725},
            f"You are busy (auto-reply: brb) and hidden; logged in since {WHEN} (1h 02m 05s).",
        )

    def test_small_replies(self) -> None:
        self.check({"type": "block_status", "user": "hans", "blocked": True}, "hans is now blocked.")
        self.check({"type": "block_status", "user": "hans", "blocked": False}, "hans is unblocked.")
        self.check({"type": "typing", "user": "hans", "status": True}, "hans is typing...")
        self.check({"type": "typing", "user": "hans", "status": False}, "hans stopped typing")
        self.check({"type": "passwd_status", "status": True}, "Your password has been changed.")
        self.check({"type": "ok", "command": "typing"})
        self.check({"type": "hello", "version": "0.1.0"})

    def test_goodbyes_and_errors(self) -> None:
        for kind in ("disconnect", "shutdown", "banned", "outdated_client"):
            self.check({"type": kind, "message": "Bye."}, "Bye.")
        self.check({"type": "error", "code": "invalid_user", "message": "Error. Invalid user vader."}, "Error. Invalid user vader.")
        self.check({"type": "error", "code": "weird"}, "Error. weird")

    def test_help(self) -> None:
        self.check(
            {"type": "help", "commands": [{"usage": "whoelse", "summary": "who is on"},
                                          {"usage": "message <user> <text>", "summary": "send"}]},
            "Commands:",
            "  whoelse                who is on",
            "  message <user> <text>  send",
        )
        self.check({"type": "help", "commands": []}, '[help] {"commands": []}')

    def test_peer_addresses_in_the_servers_words(self) -> None:
        self.check(
            {"type": "file_address", "user": "hans", "host": "127.0.0.1", "port": 6000, "token": "t"},
            "File transfer with hans: connect to 127.0.0.1:6000 with token t",
        )

    def test_nothing_to_say(self) -> None:
        self.check({"type": "disconnect", "reason": "logout", "message": ""})
        self.check({"type": "error", "code": "", "message": ""}, "Error. unknown error")

    def test_unknown_types(self) -> None:
        self.check({"type": "future_thing", "message": "Something new."}, "Something new.")
        self.check({"type": "future_thing", "b": 2, "a": 1, "id": 4}, '[future_thing] {"a": 1, "b": 2}')

    def test_missing_and_odd_fields_do_not_crash(self) -> None:
        for message in samples():
            render({"type": message["type"]})
            render({"type": message["type"], "users": 5, "messages": "x", "rooms": None, "timestamp": "nan"})
            for name in message:
                for value in ODD_VALUES:
                    render(dict(message, **{name: value}))
