"""Tests for :mod:`chatservice.auth.scram`: SCRAM-SHA-256 against RFC 7677 and ``scramp``.

``scramp`` is a second, independent implementation (a test dependency only):
its client logs in to our server side and our client to its server side.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

import scramp
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer

from chatservice.auth import scram
from chatservice.auth.errors import AccountLocked, ScramUnavailable, UnknownUser, WrongPassword
from chatservice.auth.lockout import LoginLockout
from chatservice.auth.login import LockoutChecker
from chatservice.auth.scram import (
    ChannelBindingUnsupported,
    IScramCredentials,
    InvalidProof,
    InvalidServerSignature,
    MalformedMessage,
    NonceMismatch,
    ScramChecker,
    ScramClientExchange,
    ScramError,
    ScramKeys,
    ScramServerExchange,
    ServerRejected,
    escape_username,
    parse_client_first,
    prepare_password,
    saslprep,
    unescape_username,
)

# RFC 7677, section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
STORED = (
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)
KEYS = ScramKeys.derive(PASSWORD, SALT, 4096)


def login(username: str, password: str, keys: ScramKeys) -> str:
    """Run our client against our server side; return the server-final message."""
    client = ScramClientExchange(username, password)
    server = ScramServerExchange(client.first())
    server_final = server.verify_client_final(client.final(server.server_first(keys)), keys)
    client.verify_server(server_final)
    return server_final


class RFC7677Tests(unittest.TestCase):
    """The test vector of RFC 7677, section 3, message by message."""

    def test_client(self) -> None:
        client = ScramClientExchange(USER, PASSWORD, CLIENT_NONCE)
        self.assertEqual(client.first(), CLIENT_FIRST)
        self.assertEqual(client.final(SERVER_FIRST), CLIENT_FINAL)
        self.assertEqual((client.salt, client.iterations), (SALT, 4096))
        self.assertIsNone(client.verify_server(SERVER_FINAL))

    def test_server(self) -> None:
        server = ScramServerExchange(CLIENT_FIRST)
        self.assertEqual(server.username, USER)
        self.assertEqual(server.server_first(KEYS, SERVER_NONCE), SERVER_FIRST)
        self.assertEqual(server.verify_client_final(CLIENT_FINAL, KEYS), SERVER_FINAL)

    def test_stored_form(self) -> None:
        self.assertEqual(KEYS.format(), STORED)
        self.assertEqual(ScramKeys.parse(STORED), KEYS)

    def test_precomputed_salted_password(self) -> None:
        first = ScramClientExchange(USER, PASSWORD, CLIENT_NONCE)
        first.final(SERVER_FIRST)
        again = ScramClientExchange(USER, "not used", CLIENT_NONCE)
        self.assertEqual(again.final(SERVER_FIRST, first.salted_password), CLIENT_FINAL)
        self.assertEqual(
            ScramKeys.from_salted_password(first.salted_password or b"", SALT, 4096), KEYS
        )

    def test_proof_compared_in_constant_time(self) -> None:
        compared: list[bytes] = []
        real = hmac.compare_digest

        def recording(a: bytes, b: bytes) -> bool:
            compared.append(b)
            return real(a, b)

        self.patch(hmac, "compare_digest", recording)
        server = ScramServerExchange(CLIENT_FIRST)
        server.server_first(KEYS, SERVER_NONCE)
        server.verify_client_final(CLIENT_FINAL, KEYS)
        self.assertIn(KEYS.stored_key, compared)


class KeysTests(unittest.TestCase):
    """ScramKeys: derivation, range checks and the stored text form."""

    def test_random_salt(self) -> None:
        one, two = ScramKeys.derive("wise"), ScramKeys.derive("wise")
        self.assertEqual(len(one.salt), scram.SALT_BYTES)
        self.assertNotEqual(one.salt, two.salt)
        self.assertNotEqual(one.stored_key, two.stored_key)
        self.assertEqual(one.iterations, scram.DEFAULT_ITERATIONS)
        self.assertEqual(ScramKeys.parse(one.format()), one)

    def test_repr_hides_keys(self) -> None:
        text = repr(KEYS)
        self.assertNotIn(repr(KEYS.stored_key), text)
        self.assertNotIn(repr(KEYS.server_key), text)

    def test_iterations_in_range(self) -> None:
        for iterations in (0, 1, 4095, 1_000_001):
            self.assertRaises(ValueError, ScramKeys.derive, "wise", SALT, iterations)
        self.assertEqual(ScramKeys.parse(STORED.replace("4096", "1000000", 1)).iterations, 1_000_000)

    def test_malformed_stored_text(self) -> None:
        key = base64.b64encode(b"k" * 32).decode()
        for text in (
            "",
            "SCRAM-SHA-256",
            STORED.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            STORED.replace("4096", "4095", 1),
            STORED.replace("4096", "99999999", 1),
            STORED.replace("4096", "٤٠٩٦", 1),  # Arabic-Indic digits
            STORED.replace("4096", "+4096", 1),
            STORED + " ",
            " " + STORED,
            STORED + ":AAAA",
            STORED.replace("$", ":", 1),
            STORED.replace("W22ZaJ0SNY7soEsUEjb6gQ==", "W22ZaJ0SNY7soEsUEjb6gQ"),
            STORED.replace("W22ZaJ0SNY7soEsUEjb6gQ==", "W2*ZaJ0SNY7soEsUEjb6gQ=="),
            f"SCRAM-SHA-256$4096:$$" + f"{key}:{key}",
            f"SCRAM-SHA-256$4096:c2FsdA==${key}:c2hvcnQ=",
        ):
            self.assertRaises(ValueError, ScramKeys.parse, text)

    def test_salt_and_key_lengths(self) -> None:
        key = b"k" * 32
        self.assertRaises(ValueError, ScramKeys, b"", 4096, key, key)
        self.assertRaises(ValueError, ScramKeys, b"s" * 257, 4096, key, key)
        self.assertRaises(ValueError, ScramKeys, b"s", 4096, key[:31], key)


class SaslprepTests(unittest.TestCase):
    """SASLprep (RFC 4013) for passwords, and the PostgreSQL-style fallback."""

    def test_rfc4013_examples(self) -> None:
        self.assertEqual(saslprep("I\u00adX"), "IX")  # soft hyphen mapped to nothing
        self.assertEqual(saslprep("user"), "user")
        self.assertEqual(saslprep("USER"), "USER")
        self.assertEqual(saslprep("\u00aa"), "a")  # NFKC
        self.assertEqual(saslprep("\u2168"), "IX")  # NFKC
        self.assertRaises(ValueError, saslprep, "\u0007")  # prohibited
        self.assertRaises(ValueError, saslprep, "\u0627\u0031")  # bidi rule

    def test_spaces_mapped(self) -> None:
        self.assertEqual(saslprep("a\u00a0b\u3000c"), "a b c")

    def test_refused_password_used_as_is(self) -> None:
        self.assertEqual(prepare_password("abc\ue000"), "abc\ue000".encode())
        self.assertEqual(prepare_password("pässwörd"), "pässwörd".encode())
        self.assertEqual(prepare_password("pass\u00adword"), b"password")

    def test_mapped_passwords_log_in(self) -> None:
        keys = ScramKeys.derive("password")
        login("yoda", "pass\u00adword", keys)
        self.assertRaises(InvalidProof, login, "yoda", "pass-word", keys)


class UsernameTests(unittest.TestCase):
    """User names travel saslname-escaped and are not prepared."""

    def test_escaping(self) -> None:
        self.assertEqual(escape_username("a=b,c"), "a=3Db=2Cc")
        self.assertEqual(unescape_username("a=3Db=2Cc"), "a=b,c")
        self.assertEqual(unescape_username(escape_username("=2C")), "=2C")

    def test_bad_saslnames(self) -> None:
        for saslname in ("", "a=b", "a=2c", "a=", "a=3", "a\0b"):
            error = self.assertRaises(MalformedMessage, unescape_username, saslname)
            self.assertEqual(error.error, "invalid-username-encoding")

    def test_escaped_name_logs_in(self) -> None:
        client = ScramClientExchange("o,b=i", "kenobi")
        self.assertEqual(client.first().split(",r=")[0], "n,,n=o=2Cb=3Di")
        server = ScramServerExchange(client.first())
        self.assertEqual(server.username, "o,b=i")
        keys = ScramKeys.derive("kenobi")
        server.verify_client_final(client.final(server.server_first(keys)), keys)

    def test_not_prepared(self) -> None:
        self.assertEqual(parse_client_first("n,,n=\u2168,r=abc").username, "\u2168")
        self.assertEqual(parse_client_first("n,,n=łukasz,r=abc").username, "łukasz")


class ServerFailureTests(unittest.TestCase):
    """What the server side refuses, with which error."""

    def exchange(self) -> ScramServerExchange:
        server = ScramServerExchange(CLIENT_FIRST)
        server.server_first(KEYS, SERVER_NONCE)
        return server

    def test_wrong_password(self) -> None:
        client = ScramClientExchange(USER, "pencil2", CLIENT_NONCE)
        final = client.final(SERVER_FIRST)
        error = self.assertRaises(InvalidProof, self.exchange().verify_client_final, final, KEYS)
        self.assertEqual(error.error, "invalid-proof")

    def test_other_keys(self) -> None:
        self.assertRaises(
            InvalidProof, self.exchange().verify_client_final, CLIENT_FINAL, ScramKeys.derive(PASSWORD)
        )

    def test_tampered_proof(self) -> None:
        proof = bytearray(base64.b64decode(CLIENT_FINAL.split(",p=")[1]))
        proof[0] ^= 1
        final = CLIENT_FINAL.split(",p=")[0] + ",p=" + base64.b64encode(bytes(proof)).decode()
        self.assertRaises(InvalidProof, self.exchange().verify_client_final, final, KEYS)

    def test_tampered_nonce(self) -> None:
        for final in (
            CLIENT_FINAL.replace("$k0", "$k1"),
            CLIENT_FINAL.replace("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", ""),
            CLIENT_FINAL.replace(",p=", "x,p="),
        ):
            self.assertRaises(NonceMismatch, self.exchange().verify_client_final, final, KEYS)

    def test_signed_transcript_is_checked(self) -> None:
        # An extension the proof did not cover changes the AuthMessage.
        final = CLIENT_FINAL.replace(",p=", ",x=extra,p=")
        self.assertRaises(InvalidProof, self.exchange().verify_client_final, final, KEYS)

    def test_malformed_client_final(self) -> None:
        proof = CLIENT_FINAL.split(",p=")[1]
        nonce = CLIENT_NONCE + SERVER_NONCE
        for final in (
            "",
            "garbage",
            f"c=biws,r={nonce}",  # no proof
            f"r={nonce},c=biws,p={proof}",  # out of order
            f"c=biws,r={nonce},p={proof[:-4]}",  # short proof
            f"c=biws,r={nonce},p=not*base64",
            f"c=biws,r={nonce},p={proof},x=after",
            f"c=biws,r={nonce},,p={proof}",
            f"m=ext,c=biws,r={nonce},p={proof}",
        ):
            self.assertRaises(MalformedMessage, self.exchange().verify_client_final, final, KEYS)

    def test_channel_binding_must_repeat_the_header(self) -> None:
        nonce_proof = CLIENT_FINAL.split(",", 1)[1]
        for binding in ("eSws", "cD10bHMtdW5pcXVlLCw=", "bixhPXVzZXIs", "*"):
            error = self.assertRaises(
                MalformedMessage, self.exchange().verify_client_final, f"c={binding},{nonce_proof}", KEYS
            )
            if binding != "*":
                self.assertEqual(error.error, "channel-bindings-dont-match")

    def test_final_before_first(self) -> None:
        server = ScramServerExchange(CLIENT_FIRST)
        self.assertRaises(ScramError, server.verify_client_final, CLIENT_FINAL, KEYS)
        self.assertRaises(ScramError, server.credentials, CLIENT_FINAL)

    def test_bad_server_nonce(self) -> None:
        server = ScramServerExchange(CLIENT_FIRST)
        self.assertRaises(MalformedMessage, server.server_first, KEYS, "a,b")

    def test_channel_binding_requested(self) -> None:
        error = self.assertRaises(
            ChannelBindingUnsupported, ScramServerExchange, "p=tls-unique,,n=user,r=abc"
        )
        self.assertEqual(error.error, "channel-binding-not-supported")

    def test_accepted_gs2_headers(self) -> None:
        for header in ("n,,", "y,,", "n,a=user,", "y,a=user,"):
            first = parse_client_first(header + "n=user,r=abc,x=ignored")
            self.assertEqual(first, ("user", "abc", header, "n=user,r=abc,x=ignored"))

    def test_header_downgrade_detected(self) -> None:
        # The client-first said y,, but the client-final binds n,, (c=biws).
        server = ScramServerExchange("y,," + CLIENT_FIRST[3:])
        server.server_first(KEYS, SERVER_NONCE)
        error = self.assertRaises(MalformedMessage, server.verify_client_final, CLIENT_FINAL, KEYS)
        self.assertEqual(error.error, "channel-bindings-dont-match")

    def test_malformed_client_first(self) -> None:
        for message, error in [
            ("", "invalid-encoding"),
            ("n,,", "invalid-encoding"),
            ("n,n=user,r=abc", "invalid-encoding"),
            ("x,,n=user,r=abc", "invalid-encoding"),
            ("n,,r=abc,n=user", "invalid-encoding"),
            ("n,,n=user", "invalid-encoding"),
            ("n,,n=user,r=", "invalid-encoding"),
            ("n,,n=user,r=a b", "invalid-encoding"),
            ("n,,n=user,r=caf\u00e9", "invalid-encoding"),
            ("n,,n=,r=abc", "invalid-username-encoding"),
            ("n,,n=us=er,r=abc", "invalid-username-encoding"),
            ("n,,m=ext,n=user,r=abc", "extensions-not-supported"),
            ("n,a=admin,n=user,r=abc", "other-error"),
            ("n,b=user,n=user,r=abc", "other-error"),
            ("n,,\u212a=user,r=abc", "invalid-encoding"),  # KELVIN SIGN is not ALPHA
        ]:
            caught = self.assertRaises(MalformedMessage, ScramServerExchange, message)
            self.assertEqual(caught.error, error, message)


class ClientFailureTests(unittest.TestCase):
    """What the client side refuses."""

    def client(self) -> ScramClientExchange:
        return ScramClientExchange(USER, PASSWORD, CLIENT_NONCE)

    def test_forged_server_signature(self) -> None:
        client = self.client()
        client.final(SERVER_FIRST)
        self.assertRaises(InvalidServerSignature, client.verify_server, "v=" + "A" * 43 + "=")

    def test_server_without_the_server_key(self) -> None:
        """A server that has StoredKey (it accepts the proof) but not ServerKey cannot sign."""
        stolen = ScramKeys(SALT, 4096, KEYS.stored_key, b"\0" * 32)
        client = self.client()
        server = ScramServerExchange(CLIENT_FIRST)
        server_final = server.verify_client_final(
            client.final(server.server_first(stolen, SERVER_NONCE)), stolen
        )
        self.assertRaises(InvalidServerSignature, client.verify_server, server_final)

    def test_server_error(self) -> None:
        client = self.client()
        client.final(SERVER_FIRST)
        error = self.assertRaises(ServerRejected, client.verify_server, "e=invalid-proof")
        self.assertEqual(error.error, "invalid-proof")

    def test_malformed_server_final(self) -> None:
        client = self.client()
        client.final(SERVER_FIRST)
        for message in ("", "x=abc", "v=not*base64", "garbage"):
            self.assertRaises(MalformedMessage, client.verify_server, message)

    def test_server_final_before_final(self) -> None:
        self.assertRaises(ScramError, self.client().verify_server, SERVER_FINAL)

    def test_nonce_not_extended(self) -> None:
        for message in (
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=XOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ):
            self.assertRaises(NonceMismatch, self.client().final, message)

    def test_malformed_server_first(self) -> None:
        nonce = CLIENT_NONCE + SERVER_NONCE
        for message in (
            "",
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==",
            f"s=W22ZaJ0SNY7soEsUEjb6gQ==,r={nonce},i=4096",
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096",
            f"r={nonce},s=,i=4096",
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000",  # too few: refused
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999",  # too many
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",
            f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=٤٠٩٦",
            f"m=ext,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ):
            self.assertRaises(MalformedMessage, self.client().final, message)

    def test_server_first_extensions_ignored(self) -> None:
        client = self.client()
        client.final(SERVER_FIRST + ",x=extension")
        self.assertEqual(client.iterations, 4096)

    def test_bad_client_nonce(self) -> None:
        self.assertRaises(MalformedMessage, ScramClientExchange, USER, PASSWORD, "a,b")

    def test_random_nonces(self) -> None:
        one, two = ScramClientExchange(USER, PASSWORD), ScramClientExchange(USER, PASSWORD)
        self.assertNotEqual(one.first(), two.first())
        server = ScramServerExchange(one.first())
        self.assertNotEqual(server.server_first(KEYS), ScramServerExchange(one.first()).server_first(KEYS))


class InteropTests(unittest.TestCase):
    """Both directions against scramp."""

    PASSWORDS = ["pencil", "pässwörd", "I\u00adX", "\u2168", "may the force be with you"]
    NAMES = ["user", "łukasz", "o,b=i"]

    def scramp_server(self, keys: ScramKeys) -> Any:
        """A scramp server with ``keys`` for any user name; ``self.asked`` gets the names."""
        self.asked: list[str] = []

        def auth(username: str) -> tuple[bytes, bytes, bytes, int]:
            self.asked.append(username)
            return keys.salt, keys.stored_key, keys.server_key, keys.iterations

        return scramp.ScramMechanism("SCRAM-SHA-256").make_server(auth)

    def test_same_keys(self) -> None:
        mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        for password in self.PASSWORDS:
            keys = ScramKeys.derive(password)
            salt, stored_key, server_key, iterations = mechanism.make_auth_info(
                password, iteration_count=keys.iterations, salt=keys.salt
            )
            self.assertEqual(
                ScramKeys(salt, iterations, stored_key, server_key), keys, password
            )

    def test_scramp_client_our_server(self) -> None:
        for username in self.NAMES:
            for password in self.PASSWORDS:
                keys = ScramKeys.derive(password)
                client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
                server = ScramServerExchange(client.get_client_first())
                self.assertEqual(server.username, username)
                client.set_server_first(server.server_first(keys))
                server_final = server.verify_client_final(client.get_client_final(), keys)
                client.set_server_final(server_final)  # raises if the signature is wrong

    def test_our_client_scramp_server(self) -> None:
        for username in self.NAMES:
            for password in self.PASSWORDS:
                keys = ScramKeys.derive(password)
                client = ScramClientExchange(username, password)
                server = self.scramp_server(keys)
                server.set_client_first(client.first())
                self.assertEqual(self.asked, [username])
                server.set_client_final(client.final(server.get_server_first()))
                client.verify_server(server.get_server_final())

    def test_scramp_client_wrong_password(self) -> None:
        keys = ScramKeys.derive("pencil")
        client = scramp.ScramClient(["SCRAM-SHA-256"], "user", "pencil2")
        server = ScramServerExchange(client.get_client_first())
        client.set_server_first(server.server_first(keys))
        self.assertRaises(InvalidProof, server.verify_client_final, client.get_client_final(), keys)

    def test_our_client_wrong_password_scramp_server(self) -> None:
        client = ScramClientExchange("user", "pencil2")
        server = self.scramp_server(ScramKeys.derive("pencil"))
        server.set_client_first(client.first())
        final = client.final(server.get_server_first())
        self.assertRaises(scramp.ScramException, server.set_client_final, final)
        self.assertRaises(ServerRejected, client.verify_server, server.get_server_final())

    def test_scramp_server_without_the_server_key(self) -> None:
        client = ScramClientExchange("user", "pencil")
        keys = ScramKeys.derive("pencil")
        server = self.scramp_server(ScramKeys(keys.salt, keys.iterations, keys.stored_key, b"\0" * 32))
        server.set_client_first(client.first())
        server.set_client_final(client.final(server.get_server_first()))
        self.assertRaises(InvalidServerSignature, client.verify_server, server.get_server_final())

    def test_scramp_client_y_flag(self) -> None:
        # scramp with channel binding data, against a mechanism without -PLUS, sends y,,.
        client = scramp.ScramClient(
            ["SCRAM-SHA-256"], "user", "pencil", channel_binding=("tls-unique", b"cb")
        )
        keys = ScramKeys.derive("pencil")
        first = client.get_client_first()
        self.assertTrue(first.startswith("y,,"))
        server = ScramServerExchange(first)
        client.set_server_first(server.server_first(keys))
        client.set_server_final(server.verify_client_final(client.get_client_final(), keys))

    def test_scramp_client_channel_binding_refused(self) -> None:
        client = scramp.ScramClient(
            ["SCRAM-SHA-256-PLUS"], "user", "pencil", channel_binding=("tls-unique", b"cb")
        )
        self.assertRaises(ChannelBindingUnsupported, ScramServerExchange, client.get_client_first())


class Lookup:
    """A ScramKeyLookup over a dict; ``None`` values are accounts without keys."""

    def __init__(self, keys: dict[str, ScramKeys | None]) -> None:
        self.keys = keys

    def scram_keys(self, username: str) -> defer.Deferred[ScramKeys | None]:
        if username not in self.keys:
            return defer.fail(UnknownUser(username))
        return defer.succeed(self.keys[username])


@implementer(IRealm)
class NameRealm:
    """Returns the avatar id itself as the avatar."""

    def requestAvatar(self, avatar_id: str, mind: object, *interfaces: Any) -> tuple[Any, str, Any]:
        return interfaces[0], avatar_id, lambda: None


class CheckerTests(unittest.TestCase):
    """ScramChecker through Portal.login, with the typed login errors."""

    def setUp(self) -> None:
        self.checker = ScramChecker(Lookup({"user": KEYS, "old": None}))
        self.portal = Portal(NameRealm(), [self.checker])

    def credentials(self, username: str, password: str, client_nonce: str | None = None) -> Any:
        client = ScramClientExchange(username, password, client_nonce)
        server = ScramServerExchange(client.first())
        final = client.final(server.server_first(KEYS))
        credentials = server.credentials(final, "203.0.113.7")
        credentials.client = client
        return credentials

    def test_interfaces(self) -> None:
        self.assertTrue(ICredentialsChecker.providedBy(self.checker))
        self.assertEqual(self.checker.credentialInterfaces, (IScramCredentials,))
        credentials = self.credentials("user", "pencil")
        self.assertTrue(IScramCredentials.providedBy(credentials))
        self.assertEqual((credentials.username, credentials.host), ("user", "203.0.113.7"))

    def test_right_password(self) -> None:
        credentials = self.credentials("user", "pencil")
        self.assertIsNone(credentials.server_final)
        _, avatar, _ = self.successResultOf(self.portal.login(credentials, None, IScramCredentials))
        self.assertEqual(avatar, "user")
        credentials.client.verify_server(credentials.server_final)

    def test_wrong_password(self) -> None:
        credentials = self.credentials("user", "pencil2")
        failure = self.failureResultOf(self.portal.login(credentials, None, IScramCredentials), WrongPassword)
        self.assertEqual(failure.value.args, ("user",))
        self.assertIsNone(credentials.server_final)

    def test_unknown_user(self) -> None:
        self.failureResultOf(
            self.portal.login(self.credentials("vader", "x"), None, IScramCredentials), UnknownUser
        )

    def test_account_without_keys(self) -> None:
        self.failureResultOf(
            self.portal.login(self.credentials("old", "x"), None, IScramCredentials),
            ScramUnavailable,
        )

    def test_bad_final_refused_before_login(self) -> None:
        server = ScramServerExchange(CLIENT_FIRST)
        server.server_first(KEYS, SERVER_NONCE)
        self.assertRaises(NonceMismatch, server.credentials, CLIENT_FINAL.replace("$k0", "$k1"))
        self.assertRaises(MalformedMessage, server.credentials, "c=biws")

    def test_lockout_wrapper_counts_wrong_proofs(self) -> None:
        """LockoutChecker traps the WrongPassword of a wrong proof like a wrong password."""
        lockout = LoginLockout(Clock(), 2, 60.0)
        checker = LockoutChecker(self.checker, lockout)
        self.failureResultOf(checker.requestAvatarId(self.credentials("user", "a")), WrongPassword)
        locked = self.failureResultOf(checker.requestAvatarId(self.credentials("user", "b")), AccountLocked)
        self.assertTrue(locked.value.just_locked)
        self.failureResultOf(checker.requestAvatarId(self.credentials("user", "pencil")), AccountLocked)
        self.failureResultOf(checker.requestAvatarId(self.credentials("old", "x")), ScramUnavailable)
