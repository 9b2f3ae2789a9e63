"""DNS answers for the doctor through dnspython, from the system's resolver or a given one."""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.resolver

from ..errors import ConfigError
from .records import DnsFailure


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _server(address: str) -> tuple[str, int]:
    """HOST[:PORT] or [IPv6]:PORT of a DNS server; ConfigError when it is not one."""
    host, port = address, "53"
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif address.count(":") == 1:
        host, port = address.split(":")
    # dnspython takes only addresses as servers; a name would raise a bare ValueError later.
    if not _is_address(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--dns {address!r}: must be an IP address with an optional :PORT")
    return host, int(port)


class DnsLookup:
    """A `records.Lookup` over dnspython: NXDOMAIN and no answer are empty lists."""

    def __init__(self, *, server: str | None = None, timeout: float = 5.0) -> None:
        if server is None:
            self._resolver = dns.resolver.Resolver()
        else:
            host, port = _server(server)
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        self._resolver.lifetime = timeout

    def _answer(self, name: str, kind: str) -> list[dns.rdata.Rdata]:
        try:
            return list(self._resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise DnsFailure(f"DNS: no answer for {name} {kind}: {exc}") from None

    def txt(self, name: str) -> list[str]:
        # A record longer than 255 bytes comes in several strings: one value, joined as is.
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for rdata in self._answer(name, "TXT")
        ]

    def addresses(self, name: str) -> list[str]:
        return [r.to_text() for kind in ("A", "AAAA") for r in self._answer(name, kind)]

    def mx(self, name: str) -> list[str]:
        found = sorted(self._answer(name, "MX"), key=lambda r: r.preference)  # type: ignore[attr-defined]
        return [r.exchange.to_text().rstrip(".") for r in found]  # type: ignore[attr-defined]
