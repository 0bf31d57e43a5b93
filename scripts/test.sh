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

# P = 8: the same test binaries (already built: selecting them from the whole workspace keeps
# its feature set), every suite whose streams follow RUNLEDGER_TEST_PARTITIONS: the `it` suites
# of projector, reconciler and api, producers' publish, supervisor and watchdog, cli's explain,
# publish, serve, supervisor and up (its test of `up`'s metrics; the others start `up`'s own
# servers). Left at P = 1: the tests of the single readers through the binary and of `up`'s
# embedded servers (cli crash, reconcile, replay, status, faults, the rest of up),
# cli/tests/cluster.rs and producers/tests/partitions.rs (which set their own partition counts),
# and the suites that touch no stream.
started=$SECONDS
RUNLEDGER_TEST_PARTITIONS=8 cargo test --workspace \
  --test it --test publish --test supervisor --test watchdog --test explain --test serve --test up
echo "P = 8 pass: $((SECONDS - started)) s" >&2
