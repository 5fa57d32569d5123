"""Where patient data may go: loopback only unless a config opts in, checked on the address actually used.

A host is resolved once; unless remote patient data is allowed, every address it resolves to must be
loopback, and connections then go to those checked addresses, never through a second lookup whose answer
could differ (a DNS answer that changes between check and connect cannot redirect the data).

>>> literal_loopback("127.8.0.2"), literal_loopback("::1"), literal_loopback("::ffff:127.0.0.1")
(True, True, True)
>>> literal_loopback("10.0.0.1"), literal_loopback("localhost"), literal_loopback("fe80::1%eth0")
(False, False, False)
>>> checked_addresses("127.0.0.2", 80, False, lambda bad: f"refused {bad}")
['127.0.0.2']
>>> checked_addresses("10.1.2.3", 80, False, lambda bad: f"refused {bad}")
Traceback (most recent call last):
...
rationale_sft.errors.InputError: refused ['10.1.2.3']
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from collections.abc import Callable, Sequence

from rationale_sft.errors import InputError

LOOPBACK = "loopback address (127.0.0.0/8, ::1, localhost)"


def resolve(host: str, port: int | None) -> list[str]:
    """Every address of ``host`` in the resolver's order, once each (a literal address is itself)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"host {host!r} does not resolve ({exc}); check the name, or give an IP address") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int | None, allow_remote: bool,
                      refusal: Callable[[list[str]], str]) -> list[str]:
    """The addresses of ``host``, refused with ``refusal(non-loopback addresses)`` unless all are loopback
    or ``allow_remote`` is set."""
    addresses = resolve(host, port)
    remote = [a for a in addresses if not literal_loopback(a)]
    if remote and not allow_remote:
        raise InputError(refusal(remote))
    return addresses


def literal_loopback(addr: str) -> bool:
    """True for a loopback IP address (an IPv4-mapped IPv6 one too); False for names and anything else."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to already checked addresses of a host (``addresses``, set after construction); the Host header
    (and, for HTTPS, SNI and certificate checks) still use the host name."""

    addresses: Sequence[str] = ()

    def connect(self) -> None:
        """Connect to the first checked address that answers; never look the name up again."""
        error: OSError = ConnectionError(f"no checked address for {self.host!r}")
        for addr in self.addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect((addr, self.port))
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            return
        raise error


class PinnedHTTPSConnection(http.client.HTTPSConnection, PinnedHTTPConnection):
    """HTTPS over ``PinnedHTTPConnection.connect``: TLS is set up on the pinned socket for the host name."""


def pinned_connection(scheme: str, host: str, port: int, addresses: Sequence[str],
                      timeout: float) -> http.client.HTTPConnection:
    """An unopened HTTP(S) connection to ``host`` that will only ever connect to ``addresses``."""
    cls = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    conn = cls(host, port, timeout=timeout)
    conn.addresses = addresses
    return conn
