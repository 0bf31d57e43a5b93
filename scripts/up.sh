#!/usr/bin/env bash
# Runs runledger on this machine: installs nats-server and PostgreSQL with apt-get if they are
# missing, builds the release binary and runs `runledger up`. With no NATS_URL/DATABASE_URL,
# `runledger up` uses the local servers, or starts private ones under ./.runledger/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing ${need[*]}: run as root or apt-get install ${need[*]}" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --bin runledger
exec target/release/runledger up "$@"
