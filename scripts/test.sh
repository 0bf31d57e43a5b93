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
# of projector, reconciler and api, producers' publish, supervisor and watchdog, and cli's
# explain, publish, serve, supervisor, up (its embedded nats-server maps the partitions itself),
# faults (`up` on a private nats-server with the mapping), crash and reconcile (SIGKILLing
# `runledger worker` instances instead of `project`/`reconcile`), replay and status (every
# partition). Left at P = 1: the one test of cli replay that builds as of a sequence (a
# partitioned stream refuses `--to-seq`/`--from-seq`; that refusal is tested in both passes),
# cli/tests/cluster.rs and producers/tests/partitions.rs (which set their own partition counts),
# and the suites that touch no stream.
started=$SECONDS
RUNLEDGER_TEST_PARTITIONS=8 cargo test --workspace \
  --test it --test publish --test supervisor --test watchdog --test explain --test serve --test up \
  --test faults --test crash --test reconcile --test replay --test status
echo "P = 8 pass: $((SECONDS - started)) s" >&2
