"""The page's files, read as text: what the browser tests cannot see at a glance.

- user text reaches the DOM only as text: no ``innerHTML``, ``outerHTML``,
  ``insertAdjacentHTML``, ``document.write``, ``eval`` or ``new Function``;
- nothing inline that the Content-Security-Policy would block (scripts,
  ``style`` attributes, ``on...`` handlers), nothing fetched from elsewhere;
- every module import and every file ``index.html`` names exists;
- every module says what it is for (a JSDoc ``@module`` comment);
- the version the page sends in ``hello`` is the package's;
- docs/web.rst is valid and explains every security header and directive.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import chatservice

STATIC = Path(chatservice.__file__).parent / "web" / "static"
SCRIPTS = sorted(STATIC.rglob("*.js"))
INDEX = STATIC / "index.html"

_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"]([^'"]+)['"]""", re.MULTILINE)
_HTML_SINKS = re.compile(
    r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\b"
    r"|setAttribute\(\s*['\"]on|\.srcdoc\b"
)
_ELSEWHERE = re.compile(r"\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


def relative(path: Path) -> str:
    """``path`` relative to the static folder, for messages."""
    return str(path.relative_to(STATIC))


def test_there_is_a_page() -> None:
    assert INDEX.is_file()
    assert len(SCRIPTS) >= 10, "the page is several small modules"


@pytest.mark.parametrize("script", SCRIPTS, ids=relative)
def test_text_only_reaches_the_dom_as_text(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert not _HTML_SINKS.findall(source), relative(script)


@pytest.mark.parametrize("script", SCRIPTS, ids=relative)
def test_imports_resolve(script: Path) -> None:
    for target in _IMPORT.findall(script.read_text(encoding="utf-8")):
        assert target.startswith("."), f"{relative(script)} imports {target!r} from outside the page"
        assert (script.parent / target).resolve().is_file(), f"{relative(script)}: {target}"


@pytest.mark.parametrize("script", SCRIPTS, ids=relative)
def test_every_module_is_documented(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert source.startswith("/**") and "@module" in source.split("*/", 1)[0], relative(script)


def test_nothing_inline_and_nothing_from_elsewhere() -> None:
    html = INDEX.read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\sstyle\s*=", html), "style attribute"
    assert not re.search(r"<style\b", html), "style element"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    for path in [INDEX, *SCRIPTS, *STATIC.rglob("*.css")]:
        assert not _ELSEWHERE.search(path.read_text(encoding="utf-8")), relative(path)


def test_index_names_existing_files() -> None:
    html = INDEX.read_text(encoding="utf-8")
    names = re.findall(r"""\b(?:src|href)="([^"#:]+)\"""", html)
    assert "js/main.js" in names and "style.css" in names
    for name in names:
        assert (STATIC / name).is_file(), name


def test_the_page_sends_the_package_version() -> None:
    source = (STATIC / "js" / "version.js").read_text(encoding="utf-8")
    assert f"CLIENT_VERSION = '{chatservice.__version__}'" in source


def test_docs_describe_the_page_and_every_policy_directive() -> None:
    import docutils.core

    from chatservice.web.site import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

    text = (Path(__file__).parent.parent / "docs" / "web.rst").read_text(encoding="utf-8")
    docutils.core.publish_string(
        text, writer_name="null", settings_overrides={"halt_level": 2, "report_level": 5}
    )
    for directive in CONTENT_SECURITY_POLICY.split(";"):
        assert f"``{directive.strip()}``" in text, directive
    for header in SECURITY_HEADERS:
        assert header.decode("ascii") in text, header
    assert "/ws" in text and "SCRAM-SHA-256" in text and "Origin" in text


def test_every_file_of_the_page_is_installed() -> None:
    """``setup.cfg``'s package data reaches every file of the page (``pip install .`` ships it)."""
    import configparser
    from pathlib import PurePosixPath

    config = configparser.ConfigParser()
    config.read(Path(__file__).parent.parent / "setup.cfg", encoding="utf-8")
    patterns = [
        PurePosixPath(pattern.strip())
        for pattern in config["options.package_data"]["chatservice.web"].split(",")
    ]
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = PurePosixPath(path.relative_to(STATIC.parent).as_posix())
            assert any(
                len(pattern.parts) == len(name.parts) and name.match(str(pattern))
                for pattern in patterns
            ), name
