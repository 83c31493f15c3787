"""The service definition: the systemd units in ``contrib/systemd``, socket activation,
and JSON logs through ``twistd --logger``.

- The units pass ``systemd-analyze verify`` (which checks every directive and
  that ``ExecStart``'s program exists: the copy verified names this machine's
  ``twistd`` where the unit names ``/usr/local/bin/twistd``), without a
  warning, and keep their sandboxing.
- A real ``twistd chat --listen systemd:domain=INET:index=0`` started by
  ``systemd-socket-activate`` (as systemd starts it from ``chatservice.socket``)
  takes a connection on the socket it was handed and logs a user in.
- ``twistd --logger=chatservice.jsonlogs.observer`` writes one parseable JSON
  object a line, which Twisted's own reader reads back.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.logger import eventsFromJSONLogFile, formatEvent
from twisted.trial import unittest

from tests.e2e_support import (
    HOST,
    LineClient,
    stop_process,
    subprocess_environment,
    twistd_command,
)

UNITS = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
SHIPPED_TWISTD = "/usr/local/bin/twistd"
ACCOUNTS = "yoda wise\nhans falcon\n"


def unit(name: str) -> configparser.ConfigParser:
    """A unit file's sections and directives (the last value of a repeated one)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text(encoding="utf-8").replace("\\\n", " "))
    return parser


class UnitFileTests(unittest.TestCase):
    """The units as shipped."""

    def test_systemd_analyze_verify(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed (Debian package systemd)")
        twistd = shutil.which("twistd")
        self.assertIsNotNone(twistd, "twistd is not on PATH")
        with tempfile.TemporaryDirectory() as directory:
            copies = []
            for name in ("chatservice.socket", "chatservice.service"):
                text = (UNITS / name).read_text(encoding="utf-8")
                if not os.access(SHIPPED_TWISTD, os.X_OK):
                    text = text.replace(SHIPPED_TWISTD, str(twistd))
                copy = Path(directory) / name
                copy.write_text(text, encoding="utf-8")
                copies.append(str(copy))
            result = subprocess.run(
                [analyze, "verify", *copies],
                capture_output=True, text=True, timeout=120, check=False,
            )
        complaints = [
            line for line in (result.stdout + result.stderr).splitlines()
            if "chatservice" in line
        ]
        self.assertEqual((result.returncode, complaints), (0, []))

    def test_verify_catches_a_bad_directive(self) -> None:
        """The check above can fail: a wrong value is reported on a line naming the unit."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed (Debian package systemd)")
        with tempfile.TemporaryDirectory() as directory:
            bad = Path(directory) / "chatservice-bad.socket"
            bad.write_text("[Socket]\nListenStream=0.0.0.0:4119\nBacklog=many\n", encoding="utf-8")
            result = subprocess.run(
                [analyze, "verify", str(bad)], capture_output=True, text=True, timeout=120, check=False
            )
        self.assertIn("chatservice-bad.socket", result.stdout + result.stderr)

    def test_sandboxing_and_user(self) -> None:
        service = unit("chatservice.service")["Service"]
        self.assertNotIn(service.get("User", "root"), ("root", "0"))
        self.assertEqual(service["StateDirectory"], "chatservice")
        for directive, expected in {
            "ProtectSystem": "strict",
            "NoNewPrivileges": "yes",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter": "@system-service",
        }.items():
            self.assertEqual(service[directive], expected, directive)
        command = service["ExecStart"].split()
        self.assertEqual(command[0], SHIPPED_TWISTD)
        self.assertIn("systemd:domain=INET:index=0", command)
        self.assertIn("${STATE_DIRECTORY}", command)
        self.assertIn("--logger=chatservice.jsonlogs.observer", command)

    def test_reload_sends_sighup(self) -> None:
        """``systemctl reload chatservice`` reloads the files (:mod:`chatservice.reload`)."""
        service = unit("chatservice.service")["Service"]
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")

    def test_socket_matches_the_service(self) -> None:
        socket_unit = unit("chatservice.socket")["Socket"]
        # domain=INET in the service: an IPv4 address here (a bare port would be IPv6).
        self.assertEqual(socket_unit["ListenStream"], "0.0.0.0:4119")
        self.assertEqual(socket_unit["Service"], "chatservice.service")
        self.assertEqual(unit("chatservice.service")["Unit"]["Requires"], "chatservice.socket")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class SocketActivationTests(unittest.TestCase):
    """``systemd-socket-activate`` holds the port and starts the server on the first connection."""

    def test_server_takes_the_inherited_socket(self) -> None:
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            raise unittest.SkipTest("systemd-socket-activate is not installed (Debian package systemd)")
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        (work / "credentials.txt").write_text(ACCOUNTS, encoding="utf-8")
        port = free_port()
        env = subprocess_environment()
        # systemd-socket-activate passes on only the variables it is told to;
        # --fdname sets LISTEN_FDNAMES, as systemd does (Twisted wants both).
        command = [
            activate, "--listen", f"{HOST}:{port}", "--fdname=chat",
            *(f"--setenv={name}={env[name]}" for name in ("PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "HOME") if name in env),
            *twistd_command(
                "-n", "--pidfile=", "chat",
                "--listen", "systemd:domain=INET:index=0",
                "--credentials", str(work / "credentials.txt"),
                "--data-dir", str(work / "data"),
            ),
        ]
        log_path = work / "server.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command, cwd=work, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.addCleanup(stop_process, process)
        deadline = time.monotonic() + 10
        while b"Listening on" not in log_path.read_bytes():
            self.assertIsNone(process.poll(), log_path.read_text(errors="replace"))
            self.assertLess(time.monotonic(), deadline, "systemd-socket-activate did not listen")
            time.sleep(0.02)
        # The first connection starts the server, which serves it once loaded.
        with LineClient(port, timeout=20) as client:
            client.login("yoda", "wise")
            client.send("whoelse")
            self.assertEqual(client.read_line(), "No other users are online.")
        log = log_path.read_text(errors="replace")
        self.assertIn(f"ChatFactory starting on {port}", log)
        self.assertIn("Chat service started", log)


class JsonLogTests(unittest.TestCase):
    """``twistd --logger=chatservice.jsonlogs.observer``: one JSON object a line."""

    def run_server(self, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        (work / "credentials.txt").write_text(ACCOUNTS, encoding="utf-8")
        stdout_path = work / "stdout"
        with open(stdout_path, "wb") as stdout:
            process = subprocess.Popen(
                twistd_command(
                    "-n", "--pidfile=", "--logger=chatservice.jsonlogs.observer", "chat",
                    "--listen", f"tcp:0:interface={HOST}",
                    "--credentials", str(work / "credentials.txt"),
                    "--data-dir", str(work / "data"),
                ),
                cwd=work, env={**subprocess_environment(), **extra_env},
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process, work

    def wait_for(self, path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + 20
        while True:
            content = path.read_text(errors="replace") if path.exists() else ""
            if text in content:
                return content
            self.assertIsNone(process.poll(), content)
            self.assertLess(time.monotonic(), deadline, f"{text!r} not logged:\n{content}")
            time.sleep(0.02)

    def use_and_stop(self, process: subprocess.Popen[bytes], log: Path) -> list[dict[str, object]]:
        """Log a user in, stop the server; every line of ``log``, parsed."""
        content = self.wait_for(log, "Chat service started", process)
        port = int(json.loads(
            next(line for line in content.splitlines() if "ChatFactory starting on" in line)
        )["log_text"].rsplit(" ", 1)[1])
        with LineClient(port) as client:
            client.login("yoda", "wise")
        process.terminate()
        process.wait(20)
        lines = log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def test_standard_output(self) -> None:
        process, work = self.run_server({})
        records = self.use_and_stop(process, work / "stdout")
        texts = [record["text"] for record in records]
        self.assertTrue(any(str(text).startswith("Chat service started") for text in texts), texts)
        self.assertIn("Server Shut Down.", texts)
        for record in records:
            self.assertIn("log_level", record)
            self.assertIn("log_time", record)
        # Twisted's own reader takes the lines back as events.
        with open(work / "stdout", encoding="utf-8") as f:
            events = list(eventsFromJSONLogFile(f, recordSeparator=None))
        self.assertEqual(len(events), len(records))
        self.assertIn("Server Shut Down.", [formatEvent(event) for event in events])

    def test_file_from_environment(self) -> None:
        log = Path(self.mktemp()).resolve()
        process, work = self.run_server({"CHATSERVICE_JSON_LOG": str(log)})
        records = self.use_and_stop(process, log)
        self.assertIn("Received SIGTERM, shutting down.", [record["text"] for record in records])
        self.assertEqual((work / "stdout").read_text(encoding="utf-8"), "")
