"""The protocol reference names every command and JSON type the server has."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial import unittest

from chatservice.commands import COMMANDS

DOCS = Path(__file__).parent.parent / "docs" / "protocol.rst"


class ProtocolReferenceTests(unittest.TestCase):
    """docs/protocol.rst stays true to the command table."""

    def setUp(self) -> None:
        self.text = DOCS.read_text(encoding="utf-8")

    def test_every_command_documented(self) -> None:
        for command in COMMANDS:
            self.assertIn(f"``{command.name}", self.text, command.name)
            self.assertIn(f'"type":"{command.name.replace(" ", "_")}"', self.text, command.name)

    def test_reference_is_valid_restructuredtext(self) -> None:
        import docutils.core
        import docutils.utils

        docutils.core.publish_string(
            self.text,
            writer_name="null",
            settings_overrides={"halt_level": 2, "report_level": 5},
        )

    def test_every_error_code_documented(self) -> None:
        """Every ``code`` the server's commands can answer with (``CommandError``) is listed."""
        sources = (DOCS.parent.parent / "chatservice").rglob("*.py")
        codes = {
            code
            for source in sources
            if "client" not in source.parts  # the terminal client's own errors
            for code in re.findall(r'CommandError\(\s*"([a-z_]+)"', source.read_text(encoding="utf-8"))
        }
        self.assertIn("reload_refused", codes)
        self.assertEqual(sorted(code for code in codes if f"``{code}``" not in self.text), [])

    def test_every_alias_documented(self) -> None:
        for command in COMMANDS:
            for alias in command.aliases:
                self.assertTrue(
                    alias in self.text or alias.upper() in self.text,
                    f"{command.name} alias {alias}",
                )


class ReadmeTests(unittest.TestCase):
    """README.rst gives the two commands and is valid reStructuredText."""

    def test_readme(self) -> None:
        import docutils.core

        text = (DOCS.parent.parent / "README.rst").read_text(encoding="utf-8")
        docutils.core.publish_string(
            text, writer_name="null", settings_overrides={"halt_level": 2, "report_level": 5}
        )
        self.assertIn("python3 -m pip install . && twistd -n chat", text)
        self.assertIn("python3 -m pip install '.[test]' && python3 -m pytest", text)
        ci = (DOCS.parent.parent / ".ci" / "run").read_text(encoding="utf-8")
        self.assertIn("python3 -m pip install --quiet '.[test]'", ci)
        self.assertIn("python3 -m pytest", ci)
