"""DKIM signing cost per message: dkimpy's `sign` (naive) against newsletter.mail.dkim.

Messages: 300 real digest emails from the fast composer (largest example digest, varied
selections), unsigned. Naive: `dkim.sign` per message with the PEM key, as its README shows
(it parses the key and the whole message, and signs RSA in pure Python). Ours: one
`DkimSigner` (key parsed once), body hashed as is, headers split without parsing the body,
RSA and ed25519 signed by `cryptography` (OpenSSL). Every signature of both is checked with
`dkim.verify` before timing. Medians of several runs, microseconds per message of CPU time.
Also shown: the composer's warm rate with and without signing.
"""

from __future__ import annotations

import base64
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_compose import DIGEST, SETTINGS, clock, profiles, subscribers
from newsletter.digest.parse import parse_digest
from newsletter.mail.compose import Composer
from newsletter.mail.dkim import DkimSigner, dns_txt, generate_key, load_private_key

MESSAGES = 300
RUNS = 5
SELECTOR, DOMAIN = b"news", b"papers.example.com"
HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"list-id"] * 2


def cpu_us(run: Callable[[], object], count: int) -> float:
    """Median CPU microseconds per item of `run` over RUNS runs."""
    times = []
    for _ in range(RUNS):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times) / count * 1e6


def dkimpy_key(pem: bytes, algorithm: str) -> bytes:
    """The key as dkimpy takes it: PKCS#1 PEM for RSA, the base64 seed for ed25519."""
    key = load_private_key(pem)
    if algorithm == "ed25519":
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def main() -> None:
    digest = parse_digest(DIGEST.read_text(encoding="utf-8"), source=DIGEST.name).digest
    people = subscribers(profiles(digest, 50), MESSAGES)
    composer = Composer(settings=SETTINGS, digest=digest, clock=clock)
    messages = [m.data for p in people if (m := composer.compose(p)) is not None]
    size = sum(map(len, messages)) / len(messages) / 1000
    print(f"{len(messages)} digest emails, {size:.1f} KB on average; CPU us per message")
    unsigned = cpu_us(lambda: [composer.compose(p) for p in people], len(people))
    print(f"composer, warm, unsigned: {unsigned:,.0f} us per message ({1e6 / unsigned:,.0f}/s)")
    print("key      | dkimpy.sign | ours  | ratio | composer + ours")
    for algorithm in ("rsa", "ed25519"):
        pem = generate_key("ed25519" if algorithm == "ed25519" else "rsa")
        txt = dns_txt(pem).encode()

        def dns(name: bytes, timeout: int = 5, txt: bytes = txt) -> bytes:
            return txt

        signer = DkimSigner(selector="news", domain="papers.example.com", key_pem=pem)
        naive_key = dkimpy_key(pem, algorithm)
        a = b"ed25519-sha256" if algorithm == "ed25519" else b"rsa-sha256"

        def naive(key: bytes = naive_key, a: bytes = a) -> list[bytes]:
            return [
                dkim.sign(m, SELECTOR, DOMAIN, key, signature_algorithm=a, include_headers=HEADERS)
                + m
                for m in messages
            ]

        def ours(signer: DkimSigner = signer) -> list[bytes]:
            return [signer.sign(m, now=clock()) for m in messages]

        assert all(dkim.verify(m, dnsfunc=dns) for m in naive()[:20] + ours())
        naive_us, ours_us = cpu_us(naive, len(messages)), cpu_us(ours, len(messages))
        print(
            f"{algorithm:8} | {naive_us:11,.0f} | {ours_us:5,.0f} | {naive_us / ours_us:4.0f}x "
            f"| {1e6 / (unsigned + ours_us):,.0f} messages/s"
        )


if __name__ == "__main__":
    main()
