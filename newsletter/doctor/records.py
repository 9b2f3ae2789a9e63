"""SPF, DKIM and DMARC records read and judged: pure, given a `Lookup` that answers DNS.

SPF follows RFC 7208's check_host for the mechanisms a sender publishes in practice (ip4, ip6,
a, mx, include, exists, all, redirect=) with its limit of 10 lookups; macros and ptr never
match. Relaxed alignment compares organisational domains, taken here as the last two labels
(three under a two-letter country code's short second level, as in example.co.uk): without the
public suffix list, a rare registry may be judged wrongly, which the advice line says.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import NewsletterError

SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "permerror"]
_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MAX_LOOKUPS = 10  # RFC 7208 4.6.4: DNS-querying terms one check may use


class DnsFailure(NewsletterError):
    """The DNS server did not answer (timeout, refused, server failure)."""


class Lookup(Protocol):
    """DNS answers: [] when the name or record type does not exist, DnsFailure when none comes."""

    def txt(self, name: str) -> list[str]: ...

    def addresses(self, name: str) -> list[str]: ...

    def mx(self, name: str) -> list[str]: ...


class _PermError(Exception):
    pass


@dataclass
class _Budget:
    left: int = MAX_LOOKUPS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _PermError(f"more than {MAX_LOOKUPS} DNS lookups")


def spf_record(domain: str, lookup: Lookup) -> str | None:
    """The SPF record of `domain`, None when it has none; _PermError when it has two."""
    found = [
        t for t in lookup.txt(domain) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")
    ]
    if len(found) > 1:
        raise _PermError(f"{domain} publishes {len(found)} SPF records")
    return found[0] if found else None


def _in(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, addresses: list[str], cidr: str) -> bool:
    # cidr as written after the domain: "", "/24", "//64" or "/24//64"
    v4, _, v6 = cidr.partition("//")
    bits = (v6 or "128") if ip.version == 6 else (v4.lstrip("/") or "32")
    for address in addresses:
        try:
            if ip in ipaddress.ip_network(f"{address}/{bits}", strict=False):
                return True
        except ValueError:
            continue
    return False


def _matches(
    term: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    domain: str,
    lookup: Lookup,
    budget: _Budget,
) -> bool:
    name, sep, value = term.partition(":")
    cidr = ""
    if not sep and "/" in name:  # "a/24", "mx//64": no domain given
        name, slash, rest = name.partition("/")
        cidr = slash + rest
    elif name.lower() in ("a", "mx") and "/" in value:
        value, slash, rest = value.partition("/")
        cidr = slash + rest
    name = name.lower()
    target = value or domain
    if "%" in target:
        return False  # macros: not expanded, never match
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        try:
            return ip in ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _PermError(f"bad {name} value {value!r}") from None
    if name == "a":
        budget.spend()
        return _in(ip, lookup.addresses(target), cidr)
    if name == "mx":
        budget.spend()
        hosts = lookup.mx(target)[:10]
        return any(_in(ip, lookup.addresses(host), cidr) for host in hosts)
    if name == "include":
        budget.spend()
        result = _check(ip, target, lookup, budget)
        if result in ("none", "permerror"):
            raise _PermError(f"include:{target} has no usable SPF record")
        return result == "pass"
    if name == "exists":
        budget.spend()
        return bool(lookup.addresses(target))
    if name == "ptr":
        budget.spend()
        return False
    raise _PermError(f"unknown SPF term {term!r}")


def _check(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str, lookup: Lookup, budget: _Budget
) -> SpfResult:
    record = spf_record(domain, lookup)
    if record is None:
        return "none"
    redirect = None
    for term in record.split()[1:]:
        if "=" in term and ":" not in term.split("=", 1)[0]:
            key, _, value = term.partition("=")
            if key.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers
        qualifier = term[0] if term[0] in _QUALIFIERS else "+"
        if _matches(term.lstrip("+-~?"), ip, domain, lookup, budget):
            return _QUALIFIERS[qualifier]
    if redirect is not None:
        budget.spend()
        result = _check(ip, redirect, lookup, budget)
        return "permerror" if result == "none" else result
    return "neutral"


def check_spf(ip: str, domain: str, lookup: Lookup) -> tuple[SpfResult, str]:
    """SPF's verdict for mail from `domain` sent by `ip`, and why when it is a permerror."""
    try:
        return _check(ipaddress.ip_address(ip), domain, lookup, _Budget()), ""
    except _PermError as exc:
        return "permerror", str(exc)


def tags(record: str) -> dict[str, str]:
    """The tag=value pairs of a DKIM or DMARC record (names lower-cased, spaces trimmed)."""
    found = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def dkim_key(record: str) -> tuple[str, str]:
    """(k=, p=) of a DKIM key record: the algorithm (rsa by default) and the key, spaces removed."""
    found = tags(record)
    return found.get("k", "rsa").lower(), re.sub(r"\s+", "", found.get("p", ""))


def dmarc_record(domain: str, lookup: Lookup) -> tuple[str, str] | None:
    """(where, record) of the DMARC policy for `domain`: its own, else its organisation's."""
    for name in dict.fromkeys((domain, org_domain(domain))):
        found = [t for t in lookup.txt(f"_dmarc.{name}") if t.lower().startswith("v=dmarc1")]
        if found:
            return f"_dmarc.{name}", found[0]
    return None


def org_domain(domain: str) -> str:
    """The organisational domain, approximately: see the module docstring."""
    labels = domain.lower().rstrip(".").split(".")
    short_second = len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3
    return ".".join(labels[-3:] if short_second else labels[-2:])


def aligned(one: str, other: str, *, strict: bool) -> bool:
    """Whether two domains align as DMARC means it: equal (strict) or one organisation (relaxed)."""
    a, b = one.lower().rstrip("."), other.lower().rstrip(".")
    return a == b if strict else org_domain(a) == org_domain(b)
