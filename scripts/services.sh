#!/usr/bin/env bash
# Makes sure nats-server (with JetStream) and PostgreSQL are installed and answering, for the
# test suite and for `scripts/up.sh`. Safe to run again: it only installs or starts what is
# missing. Sourced by the other scripts; prints what it does.
#
# Exports RUNLEDGER_TEST_NATS_URL and RUNLEDGER_TEST_DATABASE_URL for the tests. When the system
# PostgreSQL does not accept the `postgres` user over TCP without a password (Debian's default
# pg_hba uses scram), a private trust-auth cluster is started under target/test-services instead
# of changing the system's configuration.

set -euo pipefail
root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
services_dir="$root_dir/target/test-services"
mkdir -p "$services_dir"

say() { echo "services: $*" >&2; }

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    say "missing $*; run as root or install them: apt-get install $*"; exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"; DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_packages() {
  command -v nats-server >/dev/null 2>&1 || apt_install nats-server
  if [ -z "$(pg_bin_dir)" ] && ! command -v initdb >/dev/null 2>&1; then
    apt_install postgresql
  fi
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client

  # --- read API dashboard test (api/tests/it/browser.rs): headless Chromium + WebDriver ---
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt_install chromium chromium-driver
  fi
}

ensure_nats() {
  export RUNLEDGER_TEST_NATS_URL="${RUNLEDGER_TEST_NATS_URL:-nats://127.0.0.1:4222}"
  if answers 127.0.0.1 4222; then return; fi
  say "starting nats-server -js on 127.0.0.1:4222"
  mkdir -p "$services_dir/nats"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$services_dir/nats" >"$services_dir/nats.log" 2>&1 &
  for _ in $(seq 1 100); do answers 127.0.0.1 4222 && return; sleep 0.1; done
  say "nats-server did not start; see $services_dir/nats.log"; exit 1
}

pg_trust_ok() { psql "postgres://postgres@127.0.0.1:$1/postgres" -w -Atc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  if [ -n "${RUNLEDGER_TEST_DATABASE_URL:-}" ]; then return; fi
  if ! answers 127.0.0.1 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    say "starting the system PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
    for _ in $(seq 1 100); do answers 127.0.0.1 5432 && break; sleep 0.1; done
  fi
  if answers 127.0.0.1 5432 && pg_trust_ok 5432; then
    export RUNLEDGER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return
  fi
  # A private cluster with trust auth for the tests, on its own port.
  local bin port=55432 data="$services_dir/pg"
  bin="$(pg_bin_dir)"; [ -n "$bin" ] || bin="$(dirname "$(command -v initdb)")"
  if ! answers 127.0.0.1 "$port"; then
    say "starting a private PostgreSQL for the tests on 127.0.0.1:$port"
    local run=()
    if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); chown postgres "$services_dir"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"; [ "$(id -u)" = 0 ] && chown postgres "$data"
      "${run[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$services_dir/pg.log" -w \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $services_dir -c max_connections=300" start >/dev/null
  fi
  export RUNLEDGER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

ensure_packages
ensure_nats
ensure_postgres
say "NATS $RUNLEDGER_TEST_NATS_URL, PostgreSQL $RUNLEDGER_TEST_DATABASE_URL"
