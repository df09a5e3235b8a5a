#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the real peers the end-to-end tests
# drive, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --locked "$@"
