#!/usr/bin/env bash
# The project's test command (README.md, "Quick start").
#
# On a fresh Debian machine, run as root, it installs what the tests need (a real SMTP server,
# openssl for its throwaway TLS certificates, and a real browser), starts the local PostgreSQL
# server if it is down, and runs the whole suite: every storage test on a new SQLite file and on
# a new PostgreSQL database.
# Extra arguments go to `cargo test` (for example a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-aiosmtpd openssl chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: warning: ${missing[*]} not installed; tests needing them are skipped" >&2
  fi
fi

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -d "$TEST_DATABASE_URL"; }
if ! pg_ready && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "tests/run.sh: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if ! pg_ready; then
  if [ "${CI:-}" = "true" ]; then
    echo "tests/run.sh: PostgreSQL at $TEST_DATABASE_URL is not answering" >&2
    exit 1
  fi
  echo "tests/run.sh: warning: no PostgreSQL at $TEST_DATABASE_URL; testing SQLite only" >&2
  unset TEST_DATABASE_URL
fi

# Each test makes its own database (cd_test_*); clear those an earlier run left behind.
if [ -n "${TEST_DATABASE_URL:-}" ] && command -v psql >/dev/null; then
  psql "$TEST_DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'cd_test_%'" \
    | while read -r stale; do
        psql "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$stale\"" >/dev/null || true
      done
fi

exec cargo test "$@"
