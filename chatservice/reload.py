"""Reloading without a restart: :class:`Reloader` reads the server's files again and applies them.

A reload (``SIGHUP``, :class:`ReloadOnSignal`; or an operator's ``rehash``,
through :attr:`chatservice.state.ChatState.rehash`) reads again, from the
paths given at start:

- the ban file (``--ban-file``), added to the ``--ban`` options;
- the limits file (``--limits``), for the limits of
  :data:`~chatservice.settings.RELOADABLE` not given on the command line;
- the credentials file (``--credentials``), imported as
  :meth:`~chatservice.auth.directory.StoredAccounts.reimport` says;
- the certificate and key of every ``ssl:`` listener
  (:mod:`chatservice.server.certificates`).

Every file is read and checked first, off the reactor thread; if any of them
cannot be used, the reload is refused (:class:`ReloadRefused`, each problem
logged) and nothing changes.  Otherwise the accounts are imported, then the
rest is swapped in at once: new connections get the new limits, bans and
certificates; open connections keep their limits and TLS sessions, and are
not closed, except those from an address the new bans match, which are told
they are banned and closed (as an operator who bans an address expects).
The caps (``max-connections``, ``max-per-address``), the longest message, and
the bans apply to every new connection or message at once.  Each change is
logged on a line of its own, and the lines are what :meth:`Reloader.reload`
fires with.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from cryptography.hazmat.primitives import hashes
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatservice.auth.credentials import CredentialsError, CredentialsFile, Runner
from chatservice.auth.directory import StoredAccounts
from chatservice.server.certificates import CertificateError, CurrentCertificate, certificate_options
from chatservice.server.policy import BanList, ConnectionPolicy
from chatservice.server.registry import ConnectionRegistry
from chatservice.settings import RELOADABLE, SettingsError, effective_limits, read_bans

log = Logger()

PolicyFollower = Callable[[ConnectionPolicy], None]
"""Told the new connection policy after a reload (something that copied a value from it)."""


class ReloadError(Exception):
    """A reload did not happen, or not wholly; the message says why."""


class ReloadRefused(ReloadError):
    """A file could not be used: nothing changed.

    :param problems: what is wrong, one line per file.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ReloadFailed(ReloadError):
    """The files were good, but importing the accounts into the store failed: nothing else changed."""


@dataclass(frozen=True)
class FileSettings:
    """What the files say, read and checked (:func:`read_files`).

    :param bans: the ``--ban`` options and the ban file's entries.
    :param limits: every reloadable limit's value, by option.
    :param ignored: the limits the file sets in vain (the command line gives them).
    :param accounts: the credentials file, or ``None`` when none was given.
    :param certificates: the options read for each ``ssl:`` description.
    """

    bans: BanList
    limits: dict[str, int | float]
    ignored: list[str]
    accounts: CredentialsFile | None
    certificates: dict[str, CertificateOptions]


def read_files(config: Mapping[str, Any], tls_descriptions: Iterable[str]) -> FileSettings:
    """Read every file a reload reads (blocking: run it in a thread).

    :param config: the options the server started with (:class:`chatservice.tap.Options`).
    :param tls_descriptions: the ``ssl:`` listeners' descriptions.
    :raises ReloadRefused: naming every file that cannot be used.
    """
    problems: list[str] = []
    bans: BanList | None = None
    limits: dict[str, int | float] | None = None
    ignored: list[str] = []
    accounts: CredentialsFile | None = None
    try:
        bans = read_bans(config.get("ban") or (), config.get("ban-file"))
    except SettingsError as e:
        problems.append(str(e))
    try:
        command_line = {
            option: config[option] for option in config.get("limits-from-command-line", ())
        }
        limits, ignored = effective_limits(command_line, config.get("limits"))
    except SettingsError as e:
        problems.append(f"--limits {e}")
    imported = config.get("accounts")
    if imported is not None:
        try:
            accounts = CredentialsFile.load(imported.path)
        except CredentialsError as e:
            problems.append(f"--credentials {e}")
    certificates: dict[str, CertificateOptions] = {}
    for description in tls_descriptions:
        try:
            certificates[description] = certificate_options(description)
        except CertificateError as e:
            problems.append(f"certificate of {e}")
    if problems:
        raise ReloadRefused(problems)
    assert bans is not None and limits is not None
    return FileSettings(bans, limits, ignored, accounts, certificates)


def fingerprint(options: CertificateOptions) -> str:
    """How a certificate is named in the log: its subject, expiry and SHA-256 fingerprint."""
    certificate = options.certificate.to_cryptography()
    return (
        f"{certificate.subject.rfc4514_string()}, expires"
        f" {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC,"
        f" sha256 {certificate.fingerprint(hashes.SHA256()).hex(':').upper()}"
    )


class Reloader:
    """What a reload reads and where it puts it.

    :param config: the options the server started with: their file paths
        are read again, their command-line values are kept.
    :param registry: the live connections, whose :attr:`~ConnectionRegistry.policy`
        (limits and bans) new connections get.
    :param accounts: the accounts, where the credentials file is imported.
    :param run_in_thread: reads the files off the reactor thread.
    :param serving: whether the server serves yet (a reload before is refused:
        the accounts are not loaded).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        registry: ConnectionRegistry,
        accounts: StoredAccounts,
        run_in_thread: Runner,
        serving: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.registry = registry
        self.accounts = accounts
        self.run_in_thread = run_in_thread
        self.serving = serving
        self.certificates: dict[str, CurrentCertificate] = {}
        """The certificate in use of each ``ssl:`` listener, by description."""
        self._followers: list[PolicyFollower] = []
        self._lock = defer.DeferredLock()

    def follow(self, follower: PolicyFollower) -> None:
        """Tell ``follower`` the new policy after each reload (the limits may have changed)."""
        self._followers.append(follower)

    def reload(self, requested_by: str) -> defer.Deferred[list[str]]:
        """Read the files again and apply them, all or nothing.

        Reloads run one at a time: one asked for during another runs after it.

        :param requested_by: who asked (``SIGHUP``, or an operator), for the log.
        :return: fires with the lines saying what changed (also logged), or
            fails with :class:`ReloadRefused` (a file cannot be used: nothing
            changed) or :class:`ReloadFailed` (the store failed the accounts'
            import: nothing else changed).
        """
        return self._lock.run(self._reload, requested_by)

    def _reload(self, requested_by: str) -> defer.Deferred[list[str]]:
        log.info("Reload asked for by {who}: reading the files again", who=requested_by)
        if not self.serving():
            d: defer.Deferred[Any] = defer.fail(
                ReloadRefused(["the server is not serving yet (its state is being loaded)"])
            )
        else:
            d = self.run_in_thread(read_files, self.config, list(self.certificates))
            d.addCallback(self._apply)
        d.addCallbacks(self._done, self._refused, callbackArgs=(requested_by,), errbackArgs=(requested_by,))
        return d

    def _apply(self, settings: FileSettings) -> defer.Deferred[list[str]]:
        if settings.accounts is None:
            d: defer.Deferred[list[str]] = defer.succeed([])
        else:
            d = self.accounts.reimport(settings.accounts)
            d.addErrback(self._import_failed)
        return d.addCallback(lambda changes: changes + self._swap(settings))

    def _import_failed(self, failure: Failure) -> None:
        failure = failure.value.subFailure if isinstance(failure.value, defer.FirstError) else failure
        log.failure("Reload: importing the credentials file into the store failed", failure)
        raise ReloadFailed(
            f"importing the credentials file into the store failed ({failure.getErrorMessage()});"
            " the other settings are unchanged"
        )

    def _swap(self, settings: FileSettings) -> list[str]:
        """Put the new limits, bans and certificates in use: the lines saying what changed."""
        for option in settings.ignored:
            log.warn(
                "Reload: limit {option}: the command line's value is kept (the limits file's is ignored)",
                option=option,
            )
        changes: list[str] = []
        old = self.registry.policy
        fields = {RELOADABLE[option][1]: value for option, value in settings.limits.items()}
        policy = dataclasses.replace(old, bans=settings.bans, **fields)
        for option, value in settings.limits.items():
            before = getattr(old, RELOADABLE[option][1])
            if before != value:
                changes.append(f"limit {option}: {before:g} -> {value:g}")
        before_bans = set(old.bans.networks)
        after_bans = set(settings.bans.networks)
        changes.extend(f"ban added: {network}" for network in sorted(after_bans - before_bans, key=str))
        changes.extend(f"ban lifted: {network}" for network in sorted(before_bans - after_bans, key=str))
        for description, options in settings.certificates.items():
            certificate = self.certificates[description]
            before_print, after_print = fingerprint(certificate.options), fingerprint(options)
            if before_print != after_print:
                changes.append(f"certificate of {description}: now {after_print}")
            certificate.use(options)
        self.registry.policy = policy
        for follower in self._followers:
            follower(policy)
        if after_bans - before_bans:
            for host, count in sorted(self.registry.disconnect_banned().items()):
                changes.append(f"ended {count} connection(s) from {host}: its address is banned now")
        return changes

    def _done(self, changes: list[str], requested_by: str) -> list[str]:
        for change in changes:
            log.info("Reload ({who}): {change}", who=requested_by, change=change)
        if not changes:
            log.info("Reload ({who}): nothing changed", who=requested_by)
        return changes

    def _refused(self, failure: Failure, requested_by: str) -> Failure:
        if failure.check(ReloadRefused):
            for problem in failure.value.problems:
                log.error(
                    "Reload ({who}) refused: {problem}; the previous settings stay in force",
                    who=requested_by,
                    problem=problem,
                )
        elif not failure.check(ReloadFailed):
            log.failure("Reload ({who}) failed; the previous settings stay in force", failure, who=requested_by)
            return Failure(ReloadFailed(f"unexpected error: {failure.getErrorMessage()}"))
        return failure


class ReloadOnSignal(Service):
    """Reloads on ``SIGHUP`` while it runs: its handler only schedules the reload on the reactor.

    :param reloader: what reloads.
    :param reactor: where the reload is scheduled from the signal handler.
    :param signum: the signal (``SIGHUP``).
    """

    def __init__(
        self, reloader: Reloader, reactor: IReactorFromThreads, signum: int = signal.SIGHUP
    ) -> None:
        self.reloader = reloader
        self.reactor = reactor
        self.signum = signum
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(self.signum, self._received)

    def stopService(self) -> None:
        super().stopService()
        signal.signal(self.signum, self._previous if self._previous is not None else signal.SIG_DFL)
        self._previous = None

    def _received(self, signum: int, frame: object) -> None:
        # In a signal handler: only hand the work to the reactor.
        self.reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        self.reloader.reload(signal.Signals(self.signum).name).addErrback(_logged_already)


def _logged_already(failure: Failure) -> None:
    """A reload refused or failed: the reloader has logged why; nobody else waits for it."""
    failure.trap(ReloadError)
