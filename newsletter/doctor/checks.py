"""The doctor's checks, in the order an operator fixes them: key, DNS records, relay, base_url.

Each returns a `Check`; DNS comes through an injected `Lookup`, so the checks are pure given it
(tests run them against a real DNS server on loopback).
"""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr

from ..config import KEY_HOWTO, Settings, key_weakness
from ..errors import ConfigError
from ..mail.dkim import dns_txt, signer_for
from .probes import check_base_url, check_relay
from .records import DnsFailure, Lookup, aligned, check_spf, dkim_key, dmarc_record, tags
from .report import Check

# Addresses that never send to the internet themselves (Python's is_private also counts the
# documentation ranges, which are public as far as a test is concerned).
_INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def _internal(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address in network for network in _INTERNAL if network.version == address.version)


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower()


def check_key(settings: Settings) -> Check:
    """The secret key that signs subscriber links is set and strong."""
    if not settings.secret_key:
        return Check.fail("key", "NEWSLETTER_SECRET_KEY is not set", KEY_HOWTO)
    weakness = key_weakness(settings.secret_key.reveal())
    if weakness is not None:
        return Check.fail("key", f"NEWSLETTER_SECRET_KEY is too weak: {weakness}", KEY_HOWTO)
    return Check.ok("key", "NEWSLETTER_SECRET_KEY is strong")


def _relay_addresses(settings: Settings, lookup: Lookup) -> list[str]:
    try:
        return [str(ipaddress.ip_address(settings.smtp_host))]
    except ValueError:
        return lookup.addresses(settings.smtp_host)


def check_spf_record(settings: Settings, lookup: Lookup) -> Check:
    """SPF of the envelope sender's domain (the one SPF checks) covers the relay's address."""
    domain = _domain(settings.envelope_from)
    ips = _relay_addresses(settings, lookup)
    if not ips:
        return Check.warn("spf", f"{settings.smtp_host} has no address in DNS", "check smtp_host")
    results = {ip: check_spf(ip, domain, lookup) for ip in ips}
    verdicts = {result for result, _ in results.values()}
    shown = ", ".join(ips)
    if verdicts == {"pass"}:
        return Check.ok("spf", f"SPF of {domain} covers the relay {shown}")
    if "none" in verdicts:
        return Check.fail(
            "spf",
            f"{domain} has no SPF record",
            f'publish TXT "v=spf1 ip4:<relay address> -all" at {domain} (or include: the provider\'s)',
        )
    if "permerror" in verdicts:
        why = next(why for result, why in results.values() if result == "permerror")
        return Check.fail("spf", f"SPF of {domain} is broken: {why}", "fix the SPF record")
    uncovered = [ip for ip, (result, _) in results.items() if result != "pass"]
    verdict = results[uncovered[0]][0]
    detail = f"SPF of {domain} does not cover the relay {', '.join(uncovered)} ({verdict})"
    if all(_internal(ip) for ip in uncovered):
        return Check.warn(
            "spf",
            detail,
            "the relay is on a private address: make sure SPF covers the public address it sends from",
        )
    return Check.fail("spf", detail, f"add ip4:{uncovered[0]} (or the relay's include:) to it")


def check_dkim_record(settings: Settings, lookup: Lookup) -> Check:
    """The DKIM record at SELECTOR._domainkey.DOMAIN publishes the public half of send's key."""
    try:
        signer = signer_for(settings)  # what `send` signs with, or its refusal
    except ConfigError as exc:
        return Check.fail(
            "dkim", str(exc), "fix the [dkim] settings: `newsletter send` refuses them too"
        )
    if signer is None:
        return Check.warn(
            "dkim",
            "emails are not DKIM-signed",
            "make a key with `newsletter dkim keygen` and set [dkim] selector, domain, key_file",
        )
    name = f"{signer.selector}._domainkey.{signer.domain}"
    assert settings.dkim_key_file is not None  # signer_for read it
    try:
        expected = dkim_key(dns_txt(settings.dkim_key_file.read_bytes()))
    except (OSError, ConfigError) as exc:  # changed since signer_for read it
        return Check.fail("dkim", f"cannot read the DKIM key file: {exc}", "check [dkim] key_file")
    records = [t for t in lookup.txt(name) if "p=" in t]
    if not records:
        return Check.fail(
            "dkim",
            f"no DKIM record at {name}",
            "publish the record `newsletter dkim keygen` printed",
        )
    published = dkim_key(records[0])
    if not published[1]:
        return Check.fail(
            "dkim", f"the key at {name} is revoked (empty p=)", "publish the key again"
        )
    if published != expected:
        return Check.fail(
            "dkim",
            f"the key at {name} is not the public half of {settings.dkim_key_file}",
            "publish the record made with this key file, or point key_file at the right key",
        )
    return Check.ok("dkim", f"{name} publishes the key of {settings.dkim_key_file} ({expected[0]})")


def dmarc_for(settings: Settings, lookup: Lookup) -> tuple[str, str] | None:
    """(where, record) of the DMARC policy governing the From domain; None when there is none."""
    return dmarc_record(_domain(settings.from_address), lookup)


def check_dmarc(settings: Settings, *, dmarc: tuple[str, str] | None) -> Check:
    """The From domain publishes a DMARC policy (`dmarc_for`), and says how strict it is."""
    domain = _domain(settings.from_address)
    if dmarc is None:
        return Check.fail(
            "dmarc",
            f"no DMARC record for {domain}",
            f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{domain}" at _dmarc.{domain}, then tighten it',
        )
    where, record = dmarc
    policy = tags(record).get("p", "").lower()
    if policy in ("quarantine", "reject"):
        return Check.ok("dmarc", f"{where}: p={policy}")
    if policy == "none":
        return Check.warn(
            "dmarc",
            f"{where}: p=none (monitoring only)",
            "once reports show aligned mail passing, move to p=quarantine or p=reject",
        )
    return Check.fail(
        "dmarc", f"{where} has no valid p= ({policy!r})", "set p=none, quarantine or reject"
    )


def _signing_domain(settings: Settings) -> str | None:
    """The d= that `send` signs with; None when it does not sign (DKIM off, or refused)."""
    try:
        signer = signer_for(settings)
    except ConfigError:
        return None
    return signer.domain if signer else None


def check_alignment(settings: Settings, *, dmarc: tuple[str, str] | None) -> Check:
    """From aligns with the DKIM domain (or at least the envelope sender's) under DMARC's rules."""
    domain = _domain(settings.from_address)
    rules = tags(dmarc[1]) if dmarc else {}
    dkim_strict = rules.get("adkim", "r").lower() == "s"
    spf_strict = rules.get("aspf", "r").lower() == "s"
    mode = "strict" if dkim_strict else "relaxed"
    signed = _signing_domain(settings)
    if signed and aligned(signed, domain, strict=dkim_strict):
        return Check.ok("alignment", f"DKIM d={signed} aligns with From {domain} ({mode})")
    envelope = _domain(settings.envelope_from)
    detail = (
        f"DKIM d={signed} does not align with From {domain} ({mode})"
        if signed
        else f"no DKIM signature to align with From {domain}"
    )
    if aligned(envelope, domain, strict=spf_strict):
        return Check.warn(
            "alignment",
            f"{detail}; only SPF's {envelope} aligns",
            f"sign with [dkim] domain = {domain}: forwarding breaks SPF, not DKIM",
        )
    return Check.fail(
        "alignment",
        f"{detail}, nor does the envelope sender's {envelope}: DMARC fails",
        f"sign with [dkim] domain = {domain}",
    )


def _unanswered(name: str, exc: DnsFailure) -> Check:
    return Check.fail(name, str(exc), "check the DNS server (--dns) or the network")


def diagnose(settings: Settings, *, lookup: Lookup, timeout: float = 10.0) -> list[Check]:
    """Every check, in order; none raises (a DNS failure is that check's fail)."""
    checks = [check_key(settings)]
    for name, dns_check in (("spf", check_spf_record), ("dkim", check_dkim_record)):
        try:
            checks.append(dns_check(settings, lookup))
        except DnsFailure as exc:
            checks.append(_unanswered(name, exc))
    try:
        dmarc = dmarc_for(settings, lookup)  # once for two checks: a dead server waits once
    except DnsFailure as exc:
        checks += [_unanswered("dmarc", exc), _unanswered("alignment", exc)]
    else:
        checks += [check_dmarc(settings, dmarc=dmarc), check_alignment(settings, dmarc=dmarc)]
    checks.append(check_relay(settings, timeout=timeout))
    checks.append(check_base_url(settings, timeout=timeout))
    return checks
