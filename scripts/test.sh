#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs and starts what the tests need,
# then checks formatting and lints and runs every test against real NATS and PostgreSQL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
