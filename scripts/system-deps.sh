#!/bin/sh
# Install the Debian packages the tests and benchmarks need, when we can: Chromium and Korean
# fonts (pages, emails), openssl (TLS certificates), SpamAssassin (spam score), Dovecot (IMAP
# bounces), Postfix (a real bouncing MTA; the relay benchmark), and gcc with the Python headers
# (the compiled compose path). Without root the tests that
# need them skip and say which package to install (under CI=true a skip fails the run:
# tests/conftest.py). The tests run their own Dovecot and Postfix instances on loopback.
set -eu
want="chromium fonts-noto-cjk openssl spamassassin dovecot-imapd postfix"
# npm installs axe-core for the accessibility tests; a machine with Node.js already has it.
command -v npm >/dev/null 2>&1 || want="$want npm"
# A C compiler and the Python headers build the compiled compose path (scripts/compile.py);
# a Python built from source (pyenv, python.org) carries its own headers.
command -v gcc >/dev/null 2>&1 || want="$want gcc"
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || want="$want python3-dev"
missing=""
for pkg in $want; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "note: missing system packages:$missing (sudo apt-get install$missing); tests needing them will skip"
fi
