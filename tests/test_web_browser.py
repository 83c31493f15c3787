"""The browser page in a real browser: headless Chromium driven by Selenium.

Each test runs a real ``twistd chat --web`` on 127.0.0.1
(:class:`tests.e2e_support.ChatServer`) and Debian's ``/usr/bin/chromium``
through ``/usr/bin/chromedriver`` (Selenium is told where both are, so
selenium-manager never downloads anything).  Controls are found the way a
screen reader names them (``accessible_name``: "Username", "Password",
"Message", "Log in", "Send", the list "Users"), so the tests also check the
page's accessible names.  A telnet user is a :class:`tests.e2e_support.LineClient`.

Screenshots go to ``$CHAT_SCREENSHOTS`` (default ``/tmp/chat-screenshots``);
the folder is printed.  ``page.png`` there is the picture in
``docs/web-screenshot.png``.  Every wait is bounded (at most
:data:`WAIT` seconds); every browser is quit and every server stopped.

The module is skipped only when Chromium or chromedriver is missing
(``apt-get install chromium chromium-driver``; ``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_MISSING = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
if _MISSING:
    pytest.skip(
        f"real-browser tests need Debian's chromium and chromium-driver ({', '.join(_MISSING)}"
        " missing): apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from chatservice.auth.passwords import hash_password  # noqa: E402
from chatservice.store.sqlite import SQLiteStore  # noqa: E402
from tests.e2e_support import ChatServer, LineClient  # noqa: E402

WAIT = 10.0
"""The longest any explicit wait lasts, in seconds."""
ACCOUNTS = {
    "yoda": "wise",
    "hans": "falcon",
    "luke": "jedi",
    "leia": "princess",
    # Hashed before SCRAM existed: no SCRAM keys, so the page falls back to the password.
    "obiwan": hash_password("kenobi"),
}
CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
XSS = "<img src=x onerror=alert(1)>"


# Fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def screenshots(request: pytest.FixtureRequest) -> Path:
    """The folder screenshots are saved to (printed, even with output captured)."""
    folder = Path(os.environ.get("CHAT_SCREENSHOTS") or "/tmp/chat-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    line = f"browser screenshots: {folder}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)
    return folder


@pytest.fixture(autouse=True, scope="module")
def offline_selenium() -> Iterator[None]:
    """Selenium may never fetch a browser or driver: both are given."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        patch.setenv("SE_AVOID_STATS", "true")
        yield


def start_server(**options: Any) -> ChatServer:
    """A real ``twistd chat --web`` with :data:`ACCOUNTS` (more ChatServer ``options``)."""
    return ChatServer(ACCOUNTS, web=True, **options).start()


def stop_server(server: ChatServer) -> None:
    """Stop ``server``; it must have exited cleanly on SIGTERM, without a traceback."""
    code = server.stop()
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log
    assert code == -signal.SIGTERM, log


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A fresh server for one test (so one test's presence or lock-outs never leak into another)."""
    chat = start_server(timeout=120)
    try:
        yield chat
    finally:
        stop_server(chat)


@pytest.fixture
def browsers(screenshots: Path) -> Iterator[Callable[..., Page]]:
    """Opens browsers (``browsers(server)``); quits all of them after the test."""
    opened: list[Page] = []

    def open_browser(server: ChatServer, width: int = 1100, height: int = 720) -> Page:
        page = Page(server, screenshots, width, height)
        opened.append(page)
        return page

    try:
        yield open_browser
    finally:
        for page in opened:
            page.quit()


class Page:
    """One headless Chromium showing the chat page of ``server``.

    :param server: the chat server (its :attr:`~ChatServer.web_port`).
    :param screenshots: where :meth:`screenshot` saves.
    :param width: the window's width in CSS pixels.
    :param height: the window's height.
    """

    def __init__(self, server: ChatServer, screenshots: Path, width: int, height: int) -> None:
        self.screenshots = screenshots
        self.profile = tempfile.TemporaryDirectory(prefix="chat-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in CHROME_ARGUMENTS:
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={self.profile.name}")
        options.add_argument(f"--window-size={width},{height}")
        try:
            self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        except Exception:
            self.profile.cleanup()
            raise
        self.driver.set_page_load_timeout(WAIT)
        # The window's outer size is not the viewport: set the viewport itself.
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        self.url = f"http://127.0.0.1:{server.web_port}/"
        self.driver.get(self.url)

    def quit(self) -> None:
        """Close the browser and remove its profile."""
        try:
            self.driver.quit()
        finally:
            self.profile.cleanup()

    # Finding things ----------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Wait (at most ``timeout`` s) until ``condition()`` is truthy; return it.

        The page redraws lists as they change, so an element gone stale
        meanwhile means "not yet", and the condition is tried again.

        :raises AssertionError: naming ``what``, with a screenshot saved.
        """
        try:
            return WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.05,
                ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
            ).until(lambda _: condition())
        except Exception as error:
            shot = self.screenshot("failed")
            raise AssertionError(f"timed out waiting for {what} (screenshot {shot})") from error

    def named(self, name: str, tag: str = "*") -> WebElement:
        """The visible element (of ``tag``) whose accessible name is ``name``."""

        def find() -> WebElement | None:
            for element in self.driver.find_elements(By.TAG_NAME, tag):
                if element.is_displayed() and element.accessible_name == name:
                    return element
            return None

        return self.wait(find, f"a visible {tag} named {name!r}")

    def click(self, name: str, tag: str = "button") -> None:
        """Click the visible element (of ``tag``) named ``name``, found again if redrawn meanwhile."""

        def clicked() -> bool:
            self.named(name, tag).click()
            return True

        self.wait(clicked, f"a click on {name!r}")

    def text(self, element_id: str) -> str:
        """The visible text of the element with ``element_id``."""
        return self.driver.find_element(By.ID, element_id).text

    def messages(self) -> list[str]:
        """The texts of the messages of the open conversation (read at once, in the page)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages .message .text')]"
            ".map((element) => element.textContent);"
        )

    def wait_message(self, text: str) -> None:
        """Wait until the open conversation shows a message ``text``."""
        self.wait(lambda: text in self.messages(), f"the message {text!r}")

    def find_in_page(self, items: str, match: str, read: str, key: str) -> str:
        """Read, in the page at once, from the first element of ``items`` that matches ``key``.

        :param items: a CSS selector.
        :param match: a JavaScript condition on ``e`` (the element) and ``key``.
        :param read: a JavaScript expression of ``e``: what to return.
        :param key: what is looked for.
        :returns: what ``read`` gives, or ``""`` when no element matches.
        """
        return self.driver.execute_script(
            f"const key = arguments[0];"
            f"const e = [...document.querySelectorAll({items!r})].find((e) => {match});"
            f"return e ? {read} : '';",
            key,
        )

    def user_state(self, user: str) -> str:
        """The state words of ``user`` in the Users list (``online``, ``offline, blocked``...)."""
        return self.find_in_page(
            "#user-list li", "e.dataset.user === key", "e.querySelector('.user-state').textContent", user
        )

    def conversation_label(self, title: str) -> str:
        """The accessible name of conversation ``title``'s button ("luke, 1 unread"), or ``""``."""
        return self.find_in_page(
            "#conversation-list button",
            "e.querySelector('.conversation-name').textContent === key",
            "e.getAttribute('aria-label')",
            title,
        )

    def open_conversation(self, title: str) -> None:
        """Open conversation ``title`` from the conversation list, and wait until it is open."""
        label = self.wait(lambda: self.conversation_label(title), f"the conversation {title!r}")
        self.click(label)
        self.wait(
            lambda: self.text("conversation-title") in (title, f"{title} (direct)"),
            f"the conversation {title!r} open",
        )

    # Doing things --------------------------------------------------------------------

    def log_in(self, username: str, password: str) -> None:
        """Fill in the login form by its labels, press "Log in", wait for the chat."""
        for label, value in (("Username", username), ("Password", password)):
            field = self.named(label, "input")
            field.clear()
            field.send_keys(value)
        self.named("Log in", "button").click()
        self.wait(lambda: self.text("me-name") == username, f"{username} logged in")
        self.wait(
            lambda: self.driver.find_elements(By.CSS_SELECTOR, "#user-list li[data-user]"),
            "the user list",
        )

    def send(self, text: str) -> None:
        """Type ``text`` in "Message", press "Send", wait until it is shown as sent."""
        self.named("Message", "input").send_keys(text)
        self.named("Send", "button").click()
        self.wait_message(text)
        self.wait(lambda: self.named("Message", "input").get_attribute("value") == "", "an empty Message box")

    def screenshot(self, name: str) -> Path:
        """Save a screenshot as ``<name>.png`` in the screenshots folder."""
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def no_alert(self) -> bool:
        """Whether no JavaScript alert is open."""
        try:
            self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return True
        return False


def telnet(server: ChatServer, username: str, password: str) -> LineClient:
    """A telnet user logged in on ``server``."""
    client = server.connect(timeout=WAIT)
    client.login(username, password)
    return client


def read_until_line(client: LineClient, wanted: str) -> list[str]:
    """Read a telnet user's lines until ``wanted``; return them all (bounded by the client's timeout)."""
    lines = []
    while True:
        line = client.read_line()
        lines.append(line)
        if line == wanted:
            return lines


# Tests -----------------------------------------------------------------------------


def test_two_browsers_and_a_telnet_user_chat(server: ChatServer, browsers: Callable[..., Page]) -> None:
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")
    hans = browsers(server)
    hans.log_in("hans", "falcon")
    users = yoda.named("Users", "ul")
    assert users.aria_role == "list"
    yoda.wait(lambda: yoda.user_state("hans") == "online", "hans online for yoda")
    assert hans.user_state("yoda") == "online"
    assert yoda.user_state("luke") == "offline"

    with telnet(server, "luke", "jedi") as luke:
        yoda.wait(lambda: yoda.user_state("luke") == "online", "luke's login seen by yoda")
        hans.wait(lambda: hans.user_state("luke") == "online", "luke's login seen by hans")

        yoda.send("Hello everyone")
        hans.wait_message("Hello everyone")
        assert read_until_line(luke, "[broadcast] yoda: Hello everyone")[-1]

        luke.send("broadcast Hi from telnet")
        yoda.wait_message("Hi from telnet")
        hans.wait_message("Hi from telnet")
        luke.send("message yoda psst, yoda")
        yoda.wait(lambda: yoda.conversation_label("luke") == "luke, 1 unread", "luke's unread message")

        # A direct conversation, and typing shown to the other browser.
        yoda.click("Message hans")
        yoda.wait(lambda: yoda.text("conversation-title") == "hans (direct)", "the conversation with hans")
        yoda.named("Message", "input").send_keys("are you th")
        hans.wait(lambda: hans.text("typing") == "yoda is typing…", "yoda typing, seen by hans")
        yoda.named("Message", "input").send_keys("ere?")
        yoda.named("Send", "button").click()
        yoda.wait_message("are you there?")
        hans.wait(lambda: hans.text("typing") == "", "yoda's typing over")
        hans.wait(lambda: hans.conversation_label("yoda") == "yoda, 1 unread", "yoda's unread message")
        hans.open_conversation("yoda")
        hans.wait_message("are you there?")
        hans.send("Yes, right here")
        yoda.wait_message("Yes, right here")

        # A room of the three, from the Users list; the telnet member talks in it.
        yoda.click("Pick hans for a new room", "input")
        yoda.click("Pick luke for a new room", "input")
        yoda.click("Create room with selected (2)")
        yoda.wait(lambda: yoda.text("conversation-title") == "room 1", "room 1 open")
        assert read_until_line(luke, "yoda added you to room 1 with hans, luke, yoda.")
        luke.send("room send 1 Room works from telnet too")
        yoda.wait_message("Room works from telnet too")
        yoda.open_conversation("luke")
        yoda.wait_message("psst, yoda")
        yoda.open_conversation("everyone")
        yoda.wait_message("Hi from telnet")
        hans.open_conversation("everyone")
        hans.send("Dinner at eight?")
        yoda.wait_message("Dinner at eight?")
        luke.send("room send 1 Count me in")
        yoda.wait(lambda: yoda.conversation_label("room 1") == "room 1, 1 unread", "the room's unread message")
        hans.named("Message", "input").send_keys("I'll bring dessert")
        yoda.wait(lambda: yoda.text("typing") == "hans is typing…", "hans typing, seen by yoda")
        yoda.screenshot("page")
        hans.screenshot("page-hans")

        luke.send("logout")
    yoda.wait(lambda: yoda.user_state("luke") == "offline", "luke's logout seen by yoda")


def test_markup_in_a_message_shows_as_text(server: ChatServer, browsers: Callable[..., Page]) -> None:
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")
    hans = browsers(server)
    hans.log_in("hans", "falcon")
    with telnet(server, "luke", "jedi") as luke:
        yoda.send(XSS)
        hans.wait_message(XSS)
        assert read_until_line(luke, f"[broadcast] yoda: {XSS}")
        luke.send(f"message hans {XSS} from telnet")
        hans.open_conversation("luke")
        hans.wait_message(f"{XSS} from telnet")
        luke.send("logout")
    for page in (yoda, hans):
        assert page.driver.find_elements(By.TAG_NAME, "img") == []
        assert page.no_alert()
    hans.screenshot("markup-as-text")


def test_reconnects_after_the_server_restarts(server: ChatServer, browsers: Callable[..., Page]) -> None:
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")
    yoda.named("Message", "input").send_keys("half-typed words")

    server.terminate()
    yoda.wait(
        lambda: "The server is shutting down." in yoda.text("notices"), "the shutdown notice"
    )
    yoda.wait(lambda: "Reconnecting" in yoda.text("connection-text"), "the page waiting to reconnect")
    yoda.screenshot("server-down")
    server.restart()

    yoda.wait(lambda: "Reconnected." in yoda.text("notices"), "the page logged in again")
    assert yoda.text("connection-text") == "Connected"
    assert yoda.named("Message", "input").get_attribute("value") == "half-typed words"
    with telnet(server, "luke", "jedi") as luke:
        luke.send("whoelse")
        assert luke.read_line() == "yoda"
        yoda.named("Message", "input").send_keys(" and more")
        yoda.named("Send", "button").click()
        yoda.wait_message("half-typed words and more")
        assert read_until_line(luke, "[broadcast] yoda: half-typed words and more")
        luke.send("logout")
    yoda.screenshot("reconnected")


def test_phone_width(server: ChatServer, browsers: Callable[..., Page]) -> None:
    phone = browsers(server, width=390, height=844)
    phone.log_in("leia", "princess")
    message = phone.named("Message", "input")
    assert message.rect["x"] >= 0 and message.rect["x"] + message.rect["width"] <= 390
    assert phone.driver.execute_script("return document.documentElement.scrollWidth") <= 390
    assert not phone.driver.find_element(By.ID, "user-list").is_displayed()
    phone.click("Chats & users")
    users = phone.named("Users", "ul")
    assert users.rect["x"] + users.rect["width"] <= 390
    phone.screenshot("phone-users")
    phone.click("Message yoda")
    phone.wait(lambda: not phone.driver.find_element(By.ID, "user-list").is_displayed(), "the panel closed")
    phone.send("hello from a phone")
    phone.screenshot("phone")


def test_block_and_details_from_the_user_list(server: ChatServer, browsers: Callable[..., Page]) -> None:
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")
    with telnet(server, "hans", "falcon") as hans:
        yoda.wait(lambda: yoda.user_state("hans") == "online", "hans online")
        yoda.click("Details of hans")
        yoda.wait(lambda: "From 127.0.0.1, peer port -" in yoda.text("user-list"), "hans's details")
        yoda.click("Block hans")
        yoda.wait(lambda: yoda.user_state("hans") == "online, blocked", "hans blocked")
        hans.send("message yoda can you hear me")
        assert read_until_line(
            hans, "Your message could not be delivered as the recipient has blocked you."
        )
        yoda.click("Unblock hans")
        yoda.wait(lambda: yoda.user_state("hans") == "online", "hans unblocked")
        hans.send("busy gone fishing")
        hans.read_line()
        yoda.click("Message hans")
        yoda.send("are you busy?")
        yoda.wait(lambda: "hans is busy (auto-reply): gone fishing" in yoda.text("messages"), "the auto-reply")
        assert yoda.user_state("hans") == "online, busy"
        assert "kept until hans is available" in yoda.text("messages")
        hans.send("logout")


def test_guests_and_registration_refused_by_this_server(
    server: ChatServer, browsers: Callable[..., Page]
) -> None:
    page = browsers(server)
    page.named("Username", "input").send_keys("visitor")
    page.named("Guest", "button").click()
    page.wait(lambda: "Guests are not allowed here" in page.text("login-message"), "the guest refusal")
    assert not page.named("Guest", "button").is_enabled()
    page.named("Password", "input").send_keys("secret")
    page.named("Register", "button").click()
    page.wait(lambda: "does not take new accounts" in page.text("login-message"), "the registration refusal")
    assert not page.named("Register", "button").is_enabled()


def test_lock_out_shows_the_time_left(browsers: Callable[..., Page]) -> None:
    server = start_server(block_duration=30, max_failures=2, timeout=120)
    try:
        page = browsers(server)
        for attempt in range(2):
            page.named("Username", "input").clear()
            page.named("Username", "input").send_keys("luke")
            page.named("Password", "input").clear()
            page.named("Password", "input").send_keys(f"wrong{attempt}")
            page.named("Log in", "button").click()
            if attempt == 0:
                page.wait(lambda: "Invalid Password" in page.text("login-message"), "the refusal")
        page.wait(lambda: "Try again in" in page.text("login-message"), "the lock-out countdown")
        assert "blocked after too many failures" in page.text("login-message")
        page.screenshot("locked-out")
    finally:
        stop_server(server)


def test_inactivity_logout_is_shown(browsers: Callable[..., Page]) -> None:
    server = start_server(timeout=2)
    try:
        page = browsers(server)
        page.log_in("hans", "falcon")
        page.wait(
            lambda: "logged out after 2 seconds of inactivity" in page.text("login-message"),
            "the inactivity logout",
        )
        assert page.named("Username", "input").is_displayed()
        page.wait(lambda: page.text("connection-text") == "Connected", "a new connection")
        page.click("Log in again")
        page.wait(lambda: page.text("me-name") == "hans", "hans logged in again")
    finally:
        stop_server(server)


def test_page_modules(server: ChatServer, browsers: Callable[..., Page]) -> None:
    """The pure modules, imported in the browser: back-off, SCRAM (RFC 7677's example), ordering, typing."""
    page = browsers(server)
    results = page.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        (async () => {
          const { Backoff } = await import('/js/net/backoff.js');
          const scram = await import('/js/auth/scram.js');
          const { Conversation } = await import('/js/state/conversations.js');
          const { TypingSender } = await import('/js/typing.js');
          const { formatDuration } = await import('/js/format.js');
          const low = new Backoff({ random: () => 0 });
          const high = new Backoff({ random: () => 0.999999 });
          const delays = [...Array(10)].map(() => [low.next(), high.next()]);
          const client = new scram.ScramClient('user', scram.scramPasswordBytes('pencil'), { nonce: 'rOprNGfwEbeRWgbNEkqO' });
          const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
          const final = await client.final(serverFirst);
          let verified = true;
          try { client.verifyServer('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='); } catch (e) { verified = false; }
          let impostor = false;
          try { client.verifyServer('v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='); } catch (e) { impostor = true; }
          let stolenNonce = false;
          try { await client.final('r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'); } catch (e) { stolenNonce = true; }
          const conversation = new Conversation('everyone');
          for (const [id, t] of [['#2', 20], ['#1', 10], ['#2', 20], ['#3', 15]]) {
            conversation.add({ id, kind: 'chat', text: id, timestamp: t });
          }
          let now = 0;
          const sent = [];
          const typing = new TypingSender((status, to) => sent.push([status, to]), { clock: () => now });
          typing.typed('hans'); now = 1000; typing.typed('hans'); now = 3500; typing.typed('hans');
          typing.typed(''); typing.stop(); typing.stop();
          return {
            delays, first: client.first(), final, verified, impostor, stolenNonce,
            order: conversation.messages.map((m) => m.id), sent,
            durations: [formatDuration(42), formatDuration(65), formatDuration(7380)],
            secure: window.isSecureContext && Boolean(crypto.subtle),
            prepared: [scram.scramPasswordBytes('caf\\u00e9') !== null, scram.scramPasswordBytes('a\\u00a0b'), scram.scramPasswordBytes('\\ufb01')],
          };
        })().then(done, (error) => done({ error: String(error) }));
        """
    )
    assert "error" not in results, results
    low, high = zip(*results["delays"])
    assert low[:3] == (0.25, 0.5, 1) and max(high) < 30 and low[-1] == 15
    assert results["first"] == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert results["final"] == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert results["verified"] and results["impostor"] and results["stolenNonce"]
    assert results["order"] == ["#1", "#3", "#2"]
    assert results["sent"] == [[True, "hans"], [True, "hans"], [False, "hans"], [True, ""], [False, ""]]
    assert results["durations"] == ["42 s", "1 min 05 s", "2 h 03 min"]
    assert results["secure"], "127.0.0.1 is a secure context: SCRAM through WebCrypto"
    assert results["prepared"] == [True, None, None]


def test_missed_messages_kept_and_loaded_from_history(
    server: ChatServer, browsers: Callable[..., Page]
) -> None:
    with telnet(server, "hans", "falcon") as hans:
        hans.send("broadcast missed me?")
        hans.send("message yoda kept for later")
        assert read_until_line(hans, "yoda is offline; your message will be delivered when they log in.")
        yoda = browsers(server)
        yoda.log_in("yoda", "wise")
        yoda.wait(lambda: yoda.conversation_label("hans") == "hans, 1 unread", "the kept message")
        yoda.open_conversation("hans")
        yoda.wait_message("kept for later")
        assert "kept while you were offline" in yoda.text("messages")
        yoda.open_conversation("everyone")
        assert "missed me?" not in yoda.messages()
        yoda.click("Load earlier")
        yoda.wait_message("missed me?")
        assert yoda.text("history-state").startswith("Loaded 1 earlier message(s) since ")
        hans.send("logout")


def test_load_earlier_reads_every_page(server: ChatServer, browsers: Callable[..., Page]) -> None:
    """History comes a page at a time (100 messages at most): "Load earlier" loads them all."""
    store = SQLiteStore(server.data_dir / "chat.sqlite3")
    store.open()
    now = time.time()
    try:
        for i in range(150):
            store.add_history("broadcast", "hans", f"old news {i}", now - 600 + i)
    finally:
        store.close()
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")
    yoda.open_conversation("everyone")
    yoda.click("Load earlier")
    yoda.wait(lambda: yoda.text("history-state").startswith("Loaded 150 earlier message(s) since "), "all pages")
    shown = yoda.messages()
    assert "old news 0" in shown and "old news 149" in shown


def test_status_menu(server: ChatServer, browsers: Callable[..., Page]) -> None:
    yoda = browsers(server)
    yoda.log_in("yoda", "wise")

    def menu(item: str) -> None:
        yoda.click("Menu", "summary")
        yoda.click(item)

    with telnet(server, "hans", "falcon") as hans:
        menu("Busy…")
        yoda.named("Auto-reply", "input").send_keys("in a meeting")
        yoda.click("Set busy")
        yoda.wait(lambda: yoda.text("me-state") == "busy", "yoda busy")
        hans.send("message yoda ping")
        assert read_until_line(hans, "Auto-reply from yoda: in a meeting")
        menu("Available")
        yoda.wait(
            lambda: "1 direct message(s) were kept for you" in yoda.text("notices"), "the kept count"
        )
        yoda.wait(lambda: yoda.conversation_label("hans") == "hans, 1 unread", "the kept message")

        menu("Hide")
        yoda.wait(lambda: yoda.text("me-state") == "available, hidden", "yoda hidden")
        hans.send("whoelse")
        assert hans.read_line() == "No other users are online."
        menu("Appear")
        yoda.wait(lambda: yoda.text("me-state") == "available", "yoda visible")
        menu("Status")
        yoda.wait(lambda: "You are available and visible; logged in since" in yoda.text("notices"), "the status")

        menu("Change password…")
        yoda.named("Current password", "input").send_keys("wise")
        yoda.named("New password", "input").send_keys("wiser")
        yoda.named("Repeat the new password", "input").send_keys("wiser")
        yoda.click("Change password")
        yoda.wait(lambda: "Your password has been changed." in yoda.text("notices"), "the new password")

        menu("Log out")
        yoda.wait(lambda: yoda.text("login-message") == "You have logged out.", "the logout")
        hans.send("broadcast while you were out")
        yoda.log_in("yoda", "wiser")
        yoda.wait_message("while you were out")  # since the last visit, from history
        hans.send("logout")


def test_an_account_without_scram_keys_logs_in_with_its_password(
    server: ChatServer, browsers: Callable[..., Page]
) -> None:
    page = browsers(server)
    page.log_in("obiwan", "kenobi")
    page.send("logged in after scram_unavailable")


def test_server_notice_and_kick_are_shown(browsers: Callable[..., Page]) -> None:
    """An operator's announce shows as a server notice; a kick ends the session, not logged in again by itself."""
    server = start_server(timeout=120, options=["--operator", "yoda"])
    try:
        page = browsers(server)
        page.log_in("hans", "falcon")
        yoda = telnet(server, "yoda", "wise")
        yoda.send("announce Restart at ten")
        assert yoda.read_line() == "Server notice sent to 1 user online."
        page.wait(lambda: "Server notice from yoda: Restart at ten" in page.text("notices"), "the server notice")
        page.wait(lambda: "*** Server notice from yoda: Restart at ten" in page.messages(), "the notice in Everyone")
        yoda.send("kick hans that will do")
        page.wait(
            lambda: "kicked off this server by yoda (reason: that will do)" in page.text("login-message"),
            "the kick",
        )
        page.screenshot("kicked")
        assert page.named("Username", "input").is_displayed()
        assert yoda.sync() == ["hans logged out", "Kicked hans (reason: that will do)."]
        yoda.send("whoelse")
        assert yoda.read_line() == "No other users are online.", "not logged in again by itself"
        yoda.close()
    finally:
        stop_server(server)
