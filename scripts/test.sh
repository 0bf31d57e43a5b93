#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs and starts what the tests need,
# then checks formatting and lints and runs every test against real NATS and PostgreSQL, first
# with unpartitioned streams (P = 1), then the suites that touch streams again with every test
# stream split into 8 partitions (RUNLEDGER_TEST_PARTITIONS=8: each test's stream on a private
# nats-server with the partition mapping, one projector and reconciler per partition).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

# P = 8: the same test binaries (already built), every suite whose streams follow
# RUNLEDGER_TEST_PARTITIONS. Left at P = 1: the tests of the one-partition layout and of the
# single readers (`runledger project`/`reconcile`/`replay`/`status`, `up`'s own servers:
# cli crash, reconcile, replay, status, faults, up), cli/tests/cluster.rs and
# producers/tests/partitions.rs (which set their own partition counts), and the suites that
# touch no stream.
p8_suites=(
  "-p projector --test it"
  "-p reconciler --test it"
  "-p api --test it"
  "-p producers --test publish"
  "-p producers --test supervisor"
  "-p producers --test watchdog"
  "-p cli --test explain"
  "-p cli --test publish"
  "-p cli --test serve"
  "-p cli --test supervisor"
)
started=$SECONDS
for suite in "${p8_suites[@]}"; do
  echo "P = 8: cargo test $suite" >&2
  # shellcheck disable=SC2086 # the suite is several arguments
  RUNLEDGER_TEST_PARTITIONS=8 cargo test $suite
done
echo "P = 8 pass: $((SECONDS - started)) s" >&2
