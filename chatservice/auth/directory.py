"""The accounts a running server uses: kept in the chat store, with the user names cached.

:class:`StoredAccounts` is the one account directory of a server.  The accounts
themselves live in the chat store (SQLite, PostgreSQL or memory: the
``account`` calls of :class:`~chatservice.store.interface.IChatStore`), so
every node sharing a store shares them, and a registration or password change
survives a restart.  The credentials file (``--credentials``) is read at
start and imported (:meth:`StoredAccounts.load`), and again at each reload
(:meth:`StoredAccounts.reimport`); nothing writes to it.

What must be exact reads the store, every time: a password check
(:class:`CredentialsChecker`), a SCRAM key lookup, a password change and
adding SCRAM keys each fetch the account (:meth:`StoredAccounts.account`), so
an account registered or a password changed on another node counts at once.

What must answer synchronously (whether a name exists, before the password
prompt or for a command's argument; the ``users offline`` list) answers from a
cache of the user names: loaded at start, and updated by every change this
node makes.  Another node's registration reaches it

- at once where the caller can wait: a name the cache does not know is looked
  up in the store (:meth:`StoredAccounts.find`) before a login, a SCRAM
  challenge or a registration check is refused, and before a direct message
  is refused as addressed to nobody;
- otherwise at the next full reload, which a synchronous miss or a list asks
  for once the cache is :data:`REFRESH_AFTER` seconds old (it answers from the
  cache meanwhile).

In a cluster (``--redis``) the caches follow each other through Redis: a node
that creates an account tells the others (:attr:`StoredAccounts.shared`,
:class:`AccountsShared`), which add the name at once
(:meth:`StoredAccounts.added_elsewhere`); a node that was cut off from Redis
reads every name again when it is back (:meth:`StoredAccounts.resync`), as
an announcement may have been lost meanwhile.  The :data:`REFRESH_AFTER`
reload stays, for accounts added beside the servers (``chatservice-passwd
--store``).  A password change needs no announcement: passwords are always
checked against the store, never a cache.  An account deleted by
``chatservice-admin`` (through a node's admin socket) leaves that node's
cache at once and the others' through the announcement
(:meth:`StoredAccounts.removed`); a full reload drops names the store no
longer has.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Protocol

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatservice.auth.credentials import CredentialsFile, Runner, run_here, username_skeleton
from chatservice.auth.errors import UnknownUser, WrongPassword
from chatservice.auth.passwords import is_hashed, verify_password
from chatservice.auth.scram import ScramKeys
from chatservice.store.interface import IChatStore

__all__ = ["Account", "AccountsShared", "CredentialsChecker", "REFRESH_AFTER", "StoredAccounts"]

log = Logger()

REFRESH_AFTER = 30.0
"""Seconds after which the cached user names are read again from the store, when next used."""


class Account(NamedTuple):
    """One account as the store has it.

    :param secret: a plain password (imported from a sample file) or a ``$scrypt$`` hash.
    :param scram: its SCRAM-SHA-256 keys, or ``None`` (a plain password, or a
        hash from before SCRAM).
    """

    secret: str
    scram: ScramKeys | None


class AccountsShared(Protocol):
    """The other nodes of a cluster, as the accounts need them."""

    def account_added(self, username: str) -> None:
        """This node created the account ``username``: the others' caches are to know it."""

    def account_removed(self, username: str) -> None:
        """The account ``username`` was deleted here: the others forget the user."""


def _keys_text(keys: ScramKeys | None) -> str | None:
    return None if keys is None else keys.format()


class StoredAccounts:
    """The accounts in ``store``, and a cache of their names.

    :param store: the chat store (opened before :meth:`load`).
    :param clock: when the cached names were read, for :data:`REFRESH_AFTER`.
    :param imported: the credentials file whose accounts :meth:`load` adds
        to the store (``None``: nothing to import).
    """

    def __init__(
        self, store: IChatStore, clock: IReactorTime, imported: CredentialsFile | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.imported = imported
        self._names: set[str] = set()
        self._skeletons: dict[str, str] = {}
        """:func:`~chatservice.auth.credentials.username_skeleton` to the (first) name that has it."""
        self._sorted: list[str] | None = []
        self._read_at: float | None = None
        self._reading = False
        self._keyless: dict[str, bool] = {}
        """User name to whether its secret is a hash without SCRAM keys, as last read."""
        self.shared: AccountsShared | None = None
        """The other nodes, told of each account this node creates (``None``: on its own)."""
        self._known_while_reading: set[str] = set()
        """Names learnt while :meth:`refresh` reads (kept, though the read may predate them)."""

    # Start -------------------------------------------------------------------------

    def load(self) -> defer.Deferred[None]:
        """Import the credentials file's accounts that the store lacks, then cache the names.

        An account the store has already is left as it is (the store wins);
        the log says how many were imported and how many kept.  A line the
        store lacks is skipped, and logged with its line number, when its
        name breaks the rules for new names
        (:attr:`~chatservice.auth.credentials.CredentialsFile.problems`) or
        looks like an account's or an earlier line's
        (:func:`~chatservice.auth.credentials.username_skeleton`).
        """
        imported = self.imported
        if imported is None:
            return self.refresh()
        return self.refresh().addCallback(lambda _: self._import(imported))

    def _import(self, imported: CredentialsFile) -> defer.Deferred[None]:
        entries = []
        for username, secret, keys in imported.entries():
            problem = imported.problems.get(username)
            other = self.resembling(username)
            if username not in self._names and (problem is not None or other is not None):
                log.warn(
                    "Accounts: {path}:{line}: {username!r} not imported: {why}",
                    path=str(imported.path),
                    line=imported.line_of(username),
                    username=username,
                    why=problem if problem is not None else f"it looks like {other!r}",
                )
                continue
            entries.append((username, secret, _keys_text(keys)))
            self._known(username)  # later lines are checked against it
        d = self.store.import_accounts(entries)

        def done(added: int) -> defer.Deferred[None]:
            log.info(
                "Accounts: {added} imported from {path}, {kept} already in the store"
                " kept as they are",
                added=added,
                kept=len(entries) - added,
                path=str(imported.path),
            )
            return self.refresh()

        return d.addCallback(done)

    def reimport(self, imported: CredentialsFile) -> defer.Deferred[list[str]]:
        """Import the credentials file read again (a reload): what changed since it was last read.

        Compared with the file as last read (:attr:`imported`):

        - a new line is imported as at start: added if the store lacks the
          account (with the same checks as :meth:`load`), left as the store
          has it otherwise;
        - a changed line (another password or hash) replaces the account's
          secret and keys in the store: the operator changed it (an account
          the store lacks is added);
        - a removed line changes nothing: the account stays in the store,
          with its password (accounts are removed with the admin tool).

        Fires with one line per account added, changed or no longer in the
        file (and per new line skipped), for the log.
        """
        previous = {} if self.imported is None else _by_name(self.imported)
        now = _by_name(imported)
        changes: list[str] = []
        work: list[defer.Deferred[None]] = []
        path = str(imported.path)

        def added(created: bool, username: str) -> None:
            if created:
                changes.append(f"account {username} imported from {path}")

        def replaced(existed: bool, username: str, secret: str, keys: ScramKeys | None) -> object:
            if existed:
                changes.append(f"account {username}: password changed in {path}")
                return None
            return self.add(username, secret, keys).addCallback(added, username)

        for username, (secret, keys) in now.items():
            if username not in previous:
                problem = imported.problems.get(username)
                other = self.resembling(username)
                if username not in self._names and (problem is not None or other is not None):
                    why = problem if problem is not None else f"it looks like {other!r}"
                    changes.append(
                        f"account {username!r} not imported ({path}:{imported.line_of(username)}): {why}"
                    )
                    continue
                self._known(username)  # later lines are checked against it
                work.append(self.add(username, secret, keys).addCallback(added, username))
            elif previous[username] != (secret, keys):
                work.append(
                    self.set_secret(username, secret, keys).addCallback(
                        replaced, username, secret, keys
                    )
                )
        changes.extend(
            f"account {username} is no longer in {path}: it stays in the store"
            for username in previous
            if username not in now
        )

        def done(_: object) -> list[str]:
            self.imported = imported
            return changes

        return defer.gatherResults(work, consumeErrors=True).addCallback(done)

    def refresh(self) -> defer.Deferred[None]:
        """Read every user name from the store into the cache."""
        self._reading = True
        self._known_while_reading = set()
        asked_at = self.clock.seconds()

        def read(names: Iterable[str]) -> None:
            # The store's names, and those this node learnt of while they were
            # read (an account added meanwhile); a name deleted since the last
            # read (chatservice-admin, on any node) goes.
            fresh = set(names) | self._known_while_reading
            for name in self._names - fresh:
                self._forget_name(name)
            for name in fresh:
                self._known(name)
            self._sorted = None
            self._read_at = asked_at

        def over(result: object) -> object:
            self._reading = False
            return result

        return self.store.usernames().addCallback(read).addBoth(over)

    def resync(self) -> defer.Deferred[None]:
        """Read every user name again, if :meth:`load` has (a cluster node back on Redis).

        Before the first load there is nothing to catch up: the load reads them all.
        """
        if self._read_at is None:
            return defer.succeed(None)
        return self.refresh()

    def added_elsewhere(self, username: str) -> None:
        """Another node created the account ``username`` (announced through the cluster)."""
        self._known(username)

    def _refresh_if_stale(self) -> None:
        """Reload the cache in the background once it is :data:`REFRESH_AFTER` seconds old."""
        if self._reading or (
            self._read_at is not None and self.clock.seconds() - self._read_at < REFRESH_AFTER
        ):
            return
        self.refresh().addErrback(_log_refresh_failure)

    # What answers at once (the cache) -------------------------------------------------

    def exists(self, username: str) -> bool:
        """Whether ``username`` is an account, as far as the cache knows."""
        if username in self._names:
            return True
        self._refresh_if_stale()
        return username in self._names

    def usernames(self) -> list[str]:
        """Every account's user name, sorted, as far as the cache knows."""
        self._refresh_if_stale()
        if self._sorted is None:
            self._sorted = sorted(self._names)
        return list(self._sorted)

    def resembling(self, username: str) -> str | None:
        """An account, other than ``username``, with its skeleton (as far as the cache knows), or ``None``.

        See :func:`~chatservice.auth.credentials.username_skeleton`.
        """
        other = self._skeletons.get(username_skeleton(username))
        return None if other is None or other == username else other

    def _known(self, username: str) -> None:
        if self._reading:
            self._known_while_reading.add(username)
        if username not in self._names:
            self._names.add(username)
            self._skeletons.setdefault(username_skeleton(username), username)
            self._sorted = None

    # What asks the store ----------------------------------------------------------------

    def account(self, username: str) -> defer.Deferred[Account | None]:
        """The account ``username`` as the store has it now, or ``None`` when there is none."""
        return self.store.account(username).addCallback(self._found, username)

    def _found(self, row: tuple[str, str | None] | None, username: str) -> Account | None:
        if row is None:
            return None
        self._known(username)
        secret, scram = row
        self._keyless[username] = scram is None and is_hashed(secret)
        return Account(secret, None if scram is None else ScramKeys.parse(scram))

    def may_lack_keys(self, username: str) -> bool:
        """Whether ``username`` may be a hash without SCRAM keys: ``False`` when the last read said not.

        Saves the store read of :meth:`~chatservice.auth.accounts.AccountManager.add_scram_keys`
        after nearly every password login (whose check has just read the
        account).  Keys are never removed, and a secret is only replaced by
        one with keys, so a ``False`` stays true.
        """
        return self._keyless.get(username, True)

    def find(self, username: str) -> defer.Deferred[bool]:
        """Whether ``username`` is an account: the cache, or the store when the cache does not know it."""
        if username in self._names:
            return defer.succeed(True)
        return self.store.account(username).addCallback(self._found_name, username)

    def _found_name(self, row: object, username: str) -> bool:
        if row is None:
            return False
        self._known(username)
        return True

    def add(self, username: str, secret: str, keys: ScramKeys | None) -> defer.Deferred[bool]:
        """Create the account unless the store has the name already: whether it did."""
        d = self.store.add_account(username, secret, _keys_text(keys))

        def added(created: bool) -> bool:
            self._known(username)  # created now, or by someone else before
            if created and self.shared is not None:
                self.shared.account_added(username)
            return created

        return d.addCallback(added)

    def set_secret(
        self, username: str, secret: str, keys: ScramKeys | None
    ) -> defer.Deferred[bool]:
        """Replace the account's secret and keys: whether there is such an account."""
        return self.store.set_secret(username, secret, _keys_text(keys))

    def add_scram_keys(self, username: str, secret: str, keys: ScramKeys) -> defer.Deferred[bool]:
        """Give the account ``keys`` if its secret is still ``secret`` and it has none: whether it did."""
        return self.store.add_scram_keys(username, secret, keys.format())

    # Removal (chatservice-admin) --------------------------------------------------------

    def removed(self, username: str) -> None:
        """The account ``username`` was deleted from the store here: the cache and the other nodes forget it."""
        self._forget_name(username)
        if self.shared is not None:
            self.shared.account_removed(username)

    def removed_elsewhere(self, username: str) -> None:
        """Another node deleted the account ``username`` (announced through the cluster)."""
        self._forget_name(username)

    def _forget_name(self, username: str) -> None:
        self._known_while_reading.discard(username)
        self._keyless.pop(username, None)
        if username not in self._names:
            return
        self._names.discard(username)
        self._sorted = None
        skeleton = username_skeleton(username)
        if self._skeletons.get(skeleton) == username:
            del self._skeletons[skeleton]
            other = next((n for n in sorted(self._names) if username_skeleton(n) == skeleton), None)
            if other is not None:
                self._skeletons[skeleton] = other


@implementer(ICredentialsChecker)
class CredentialsChecker:
    """Checks a user name and password against the account in the store.

    Fails with :class:`UnknownUser` or :class:`WrongPassword`, both
    ``UnauthorizedLogin``.  Plain secrets are compared in constant time on
    the spot; hashes are verified by ``run_in_thread`` (slow KDF).

    :param accounts: the accounts (each check reads the store).
    :param run_in_thread: runs the hash verification off the reactor thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, accounts: StoredAccounts, run_in_thread: Runner = run_here) -> None:
        self.accounts = accounts
        self.run_in_thread = run_in_thread

    def requestAvatarId(self, credentials: IUsernamePassword) -> defer.Deferred[str]:
        return self.accounts.account(credentials.username).addCallback(self._check, credentials)

    def _check(
        self, account: Account | None, credentials: IUsernamePassword
    ) -> str | defer.Deferred[str]:
        username = credentials.username
        if account is None:
            raise UnknownUser(username)
        stored = account.secret
        if not is_hashed(stored):
            return _decided(verify_password(credentials.password, stored), username)
        d = self.run_in_thread(verify_password, credentials.password, stored)
        return d.addCallback(_decided, username)


def _decided(matches: bool, username: str) -> str:
    if matches:
        return username
    raise WrongPassword(username)


def _by_name(imported: CredentialsFile) -> dict[str, tuple[str, ScramKeys | None]]:
    """Each account of a credentials file, by name: ``(secret, SCRAM keys or None)``."""
    return {username: (secret, keys) for username, secret, keys in imported.entries()}


def _log_refresh_failure(failure: Failure) -> None:
    log.failure("Reading the user names from the store failed", failure)
