"""DKIM signatures (RFC 6376; ed25519 per RFC 8463) on finished messages, and key pairs for them.

A signature covers the headers a receiver shows or acts on, most named twice in h= so that a
second copy cannot be added later without breaking it (over-signing), and the body; never Date
or Message-ID, which relays such as Amazon SES replace. Headers are
canonicalised `relaxed`, the body `simple` (c=relaxed/simple, what most signers send).

Signing is done here rather than by dkimpy's `sign`, which re-parses the whole message with
regular expressions and signs RSA in pure Python: bench/bench_dkim.py measures both (dkimpy
costs 20x more per message with RSA, 6x with ed25519). dkimpy verifies every signature made
here, in the tests and in that benchmark.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..config import Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# cryptography is imported where a key is read or made, not here: with DKIM off (most sends
# of a test setup, every preview), importing it would be ~10 ms of each command's start.

Algorithm = Literal["rsa", "ed25519"]
# Signed, each twice (absent ones too: then none can be added), the MIME headers as well, so
# no one can relabel or re-type the message.
SIGNED_HEADERS = (
    "from",
    "reply-to",
    "to",
    "subject",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)
# Signed once: a relay may add its own above ours (Amazon SES adds a Feedback-ID), which a
# verifier then passes over, reading from the bottom. Date and Message-ID are not signed at
# all: SES replaces both, and says not to sign them.
SIGNED_ONCE = ("feedback-id",)
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301)
RSA_BITS = 2048
_WSP = re.compile(rb"[ \t]+")
_H_START = len("\tt=1734080400; h=")  # where the h= list starts on its line
_LINE = 72  # folded lines of the signature header stay under 78 characters


def _relaxed(name: bytes, value: bytes) -> bytes:
    """One header canonicalised `relaxed` (RFC 6376 3.4.2): name lower case, value unfolded."""
    unfolded = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    return name.strip().lower() + b":" + unfolded + b"\r\n"


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header field, continuation lines kept in the value."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def _fold(items: list[str], separator: str, *, first: int) -> str:
    """`items` joined by `separator`, with a line break before any that would pass _LINE."""
    out, width = "", first
    for index, item in enumerate(items):
        piece = item if index == 0 else separator + item
        if width + len(piece) > _LINE and index:
            out += separator.rstrip() + "\r\n\t"
            piece, width = item, 1
        out += piece
        width += len(piece)
    return out


_LINE_ENDS = b"\r\n"  # CR and LF: the bytes a simple body loses at its end


class DkimSigner:
    """Signs messages for one selector, domain and private key (PEM, RSA or ed25519)."""

    __slots__ = ("_canonical", "_h", "_names", "_signature", "algorithm", "domain", "selector")

    def __init__(self, *, selector: str, domain: str, key_pem: bytes, source: str = "key") -> None:
        self.selector = selector
        self.domain = domain.lower()
        key = load_private_key(key_pem, source=source)
        self.algorithm = "ed25519-sha256" if _is_ed25519(key) else "rsa-sha256"
        self._signature = _signing(key)
        # Each header signed twice: a second one added on the way then breaks the signature.
        names = [*(name for name in SIGNED_HEADERS for _ in range(2)), *SIGNED_ONCE]
        self._names = tuple(name.encode() for name in names)
        self._h = _fold(names, ":", first=_H_START)
        # Canonical forms of header fields seen before: most (From, List-Id, MIME-Version...)
        # are the same in every message of a run. Bounded: cleared when full.
        self._canonical: dict[tuple[bytes, bytes], bytes] = {}

    def sign(self, message: bytes, *, now: dt.datetime) -> bytes:
        """`message` (CRLF line endings, headers then a blank line) with a DKIM-Signature on top."""
        end_of_head = message.find(b"\r\n\r\n")
        if end_of_head < 0:
            raise ValueError("a message to sign needs a blank line after its headers")
        head = message[:end_of_head]
        # `simple` body: trailing empty lines dropped, one CRLF kept. Hashed in place: the
        # body is most of a message (~45 KB), and copying it cost more than the hash.
        start = end_of_head + 4
        end = len(message)
        while end > start and message[end - 1] in _LINE_ENDS:
            end -= 1
        hashed = hashlib.sha256(memoryview(message)[start:end])
        hashed.update(b"\r\n")
        body_hash = hashed.digest()
        tags = (
            f" v=1; a={self.algorithm}; c=relaxed/simple; d={self.domain}; s={self.selector};\r\n"
            f"\tt={int(now.timestamp())}; h={self._h};\r\n"
            f"\tbh={base64.b64encode(body_hash).decode()};\r\n"
            "\tb="
        ).encode("ascii")
        # Each header's instances by lowercased name, top to bottom.
        instances: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for field in _headers(head):
            instances.setdefault(field[0].strip().lower(), []).append(field)
        signed = bytearray()
        for name in self._names:  # each name takes the bottom-most instance not yet taken
            found = instances.get(name)
            if found:
                field = found.pop()
                canonical = self._canonical.get(field)
                if canonical is None:
                    if len(self._canonical) >= 1024:
                        self._canonical.clear()
                    canonical = self._canonical[field] = _relaxed(*field)
                signed += canonical
        signed += _relaxed(b"DKIM-Signature", tags)[:-2]  # the signature itself: b= empty, no CRLF
        value = base64.b64encode(self._signature(bytes(signed))).decode()
        chunks = [value[i : i + _LINE - 2] for i in range(0, len(value), _LINE - 2)]
        return b"DKIM-Signature:" + tags + "\r\n\t".join(chunks).encode() + b"\r\n" + message


def _signing(key: PrivateKey) -> Callable[[bytes], bytes]:
    """The signature of the canonical header block with `key`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        rsa_key, pad, algorithm = key, padding.PKCS1v15(), hashes.SHA256()
        return lambda data: rsa_key.sign(data, pad, algorithm)
    ed_key = key
    return lambda data: ed_key.sign(hashlib.sha256(data).digest())  # RFC 8463: over the SHA-256


def _is_ed25519(key: PrivateKey) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey)


def load_private_key(pem: bytes, *, source: str = "key") -> PrivateKey:
    """An RSA (>= 1024 bits) or ed25519 private key from PEM, else a ConfigError naming `source`."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{source}: not an unencrypted PEM RSA or ed25519 private key "
            "(make one with: newsletter dkim keygen)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{source}: RSA key of {key.key_size} bits; receivers ignore keys under "
                f"{MIN_RSA_BITS} bits (make a {RSA_BITS}-bit one with: newsletter dkim keygen)"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(f"{source}: a {type(key).__name__}; DKIM takes RSA or ed25519 keys")


@functools.lru_cache(maxsize=8)
def _signer(selector: str, domain: str, key_pem: bytes, source: str) -> DkimSigner:
    # Keyed by the key's bytes: an edited key file is read anew; parsing RSA is slow.
    return DkimSigner(selector=selector, domain=domain, key_pem=key_pem, source=source)


def signer_for(settings: Settings) -> DkimSigner | None:
    """The signer the [dkim] settings describe, None when DKIM is off; ConfigError when half set."""
    given = {
        "dkim_selector": settings.dkim_selector,
        "dkim_domain": settings.dkim_domain,
        "dkim_key_file": settings.dkim_key_file,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"DKIM needs dkim_selector, dkim_domain and dkim_key_file; {', '.join(missing)} not set"
        )
    path = settings.dkim_key_file
    assert path is not None
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim_key_file {path}: cannot read: {exc.strerror or exc}") from None
    return _signer(settings.dkim_selector, settings.dkim_domain, pem, f"dkim_key_file {path}")


def sign_for(data: bytes, *, settings: Settings, now: dt.datetime) -> bytes:
    """`data` signed as the settings say, or unchanged when DKIM is off."""
    signer = signer_for(settings)
    return data if signer is None else signer.sign(data, now=now)


# Key pairs -----------------------------------------------------------------------------------


def generate_key(algorithm: Algorithm = "rsa") -> bytes:
    """A new private key in PEM (PKCS#8): RSA 2048 bits or ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dns_txt(key_pem: bytes) -> str:
    """The DNS TXT value publishing the public half of `key_pem` ("v=DKIM1; k=...; p=...")."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = load_private_key(key_pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def zone_record(*, selector: str, domain: str, txt: str) -> str:
    """One zone-file line for the TXT record, split into strings of at most 255 characters."""
    strings = " ".join(f'"{txt[i : i + 255]}"' for i in range(0, len(txt), 255))
    return f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT {strings}"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """The files `write_key_pair` made and the record to publish."""

    private: Path
    record_file: Path
    record: str


def write_key_pair(
    out: Path, *, selector: str, domain: str, algorithm: Algorithm = "rsa"
) -> KeyPair:
    """Write OUT/SELECTOR.private (mode 0600) and OUT/SELECTOR.txt (the DNS record); never overwrite."""
    private = out / f"{selector}.private"
    record_file = out / f"{selector}.txt"
    for path in (private, record_file):
        if path.exists():
            raise ConfigError(f"{path} exists; choose another selector or folder")
    pem = generate_key(algorithm)
    record = zone_record(selector=selector, domain=domain, txt=dns_txt(pem))
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        record_file.write_text(record + "\n", encoding="ascii")
    except OSError as exc:
        raise ConfigError(f"cannot write the key pair in {out}: {exc.strerror or exc}") from None
    return KeyPair(private=private, record_file=record_file, record=record)
