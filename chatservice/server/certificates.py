"""``ssl:`` listeners whose certificate and key can be read again without closing anything.

Twisted's ``ssl:`` endpoint reads its certificate and key once, into a
:class:`~twisted.internet.ssl.CertificateOptions`, and listens through
:meth:`IReactorSSL.listenSSL <twisted.internet.interfaces.IReactorSSL.listenSSL>`,
which wraps the factory in a
:class:`~twisted.protocols.tls.TLSMemoryBIOFactory` over a TCP port.  The chat
server does the same, but the TLS factory's connection creator is a
:class:`CurrentCertificate`, which makes each new connection from the
certificate options it holds *now*: :meth:`CurrentCertificate.use` swaps in
options read again (:func:`certificate_options`), new connections present the
new certificate, and connections already open keep their TLS session.

Nothing here parses an endpoint description or reads Twisted's private
fields: the description is handed to Twisted's own
:func:`~twisted.internet.endpoints.serverFromString`, whose ``ssl:`` endpoint
calls ``listenSSL`` on the reactor it was given:

- to listen, :class:`TLSListeners` gives it (through
  :func:`twisted.application.strports.service`) a reactor whose ``listenSSL``
  listens with the real reactor's ``listenTCP`` and a
  :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` over a
  :class:`CurrentCertificate`;
- to read the files again, :func:`certificate_options` gives it a reactor whose
  ``listenSSL`` only keeps the options (nothing listens).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTCP,
)
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

TLS_ENDPOINT = "ssl"
"""The endpoint type whose listeners present a certificate."""


class CertificateError(Exception):
    """The certificate or key of an ``ssl:`` listener cannot be used; the message says why."""


def is_tls(description: str) -> bool:
    """Whether the server endpoint ``description`` is an ``ssl:`` one."""
    return description.split(":", 1)[0].strip() == TLS_ENDPOINT


@implementer(IOpenSSLServerConnectionCreator)
class CurrentCertificate:
    """Makes each new TLS connection from the certificate options in use now.

    :param options: the options the listener starts with.
    """

    def __init__(self, options: CertificateOptions) -> None:
        self.options = options

    def use(self, options: CertificateOptions) -> None:
        """New connections present ``options``' certificate (open ones keep theirs)."""
        self.options = options

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        # As Twisted does for a context factory given to listenSSL.
        return SSL.Connection(self.options.getContext(), None)


class _KeepOptions:
    """A stand-in reactor for an ``ssl:`` endpoint: its ``listenSSL`` keeps the options, listens nowhere."""

    def __init__(self) -> None:
        self.options: CertificateOptions | None = None

    def listenSSL(
        self, port: int, factory: IProtocolFactory, contextFactory: CertificateOptions,
        backlog: int = 50, interface: str = "",
    ) -> None:
        self.options = contextFactory


def certificate_options(description: str) -> CertificateOptions:
    """Read the certificate and key of the ``ssl:`` endpoint ``description`` (blocking file I/O).

    Read and checked as Twisted reads them when it listens, and an OpenSSL
    context made from them, so that a key that does not match its
    certificate, or any other file OpenSSL refuses, is found here.

    :raises CertificateError: a missing or unreadable file, a file that is no
        PEM certificate or key, a certificate that does not match its key.
    """
    keeper = _KeepOptions()
    try:
        endpoints.serverFromString(keeper, description).listen(None)
        if keeper.options is None:
            raise CertificateError(f"{description}: not an ssl: endpoint")
        keeper.options.getContext()
    except CertificateError:
        raise
    except Exception as e:  # OSError, ValueError, OpenSSL's errors, Twisted's VerifyError...
        raise CertificateError(f"{description}: {_why(e)}") from None
    return keeper.options


def _why(error: Exception) -> str:
    """What ``error`` says, without Python's noise: OpenSSL's reasons, or the message."""
    entries = error.args[0] if error.args and isinstance(error.args[0], list) else None
    if entries and all(isinstance(entry, tuple) for entry in entries):
        reasons = "; ".join(": ".join(part for part in entry if part) for entry in entries)
        return f"OpenSSL refused the certificate or key ({reasons})"
    return str(error) or type(error).__name__


class _ListenThroughCertificate:
    """A reactor for one ``ssl:`` endpoint: its ``listenSSL`` listens over TCP with a :class:`CurrentCertificate`."""

    def __init__(self, reactor: IReactorTCP, certificate: CurrentCertificate) -> None:
        self._reactor = reactor
        self._certificate = certificate

    def listenSSL(
        self, port: int, factory: IProtocolFactory, contextFactory: CertificateOptions,
        backlog: int = 50, interface: str = "",
    ) -> IListeningPort:
        # contextFactory is what Twisted read from the files just now, as the
        # certificate's options were: the certificate's (swapped at reloads) is used.
        tls = TLSMemoryBIOFactory(self._certificate, False, factory)
        return self._reactor.listenTCP(port, tls, backlog=backlog, interface=interface)


class TLSListeners:
    """The ``ssl:`` listeners of a server, each with its :class:`CurrentCertificate`, by description.

    :param reactor: the reactor they listen with.
    """

    def __init__(self, reactor: IReactorTCP) -> None:
        self._reactor = reactor
        self.certificates: dict[str, CurrentCertificate] = {}
        """The certificate in use of each ``ssl:`` description (as given on the command line)."""

    def reactor(self, description: str) -> Any:
        """The reactor to give Twisted's endpoint for ``description``: for ``ssl:``, one that
        listens with a certificate that can be swapped; for any other, the reactor itself.
        """
        if not is_tls(description):
            return self._reactor
        certificate = self.certificates.get(description)
        if certificate is None:
            certificate = self.certificates[description] = CurrentCertificate(
                certificate_options(description)
            )
        return _ListenThroughCertificate(self._reactor, certificate)
