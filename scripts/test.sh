#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the real peers the end-to-end tests
# drive, then runs every test of the workspace. The catalog's own tests run on SQLite and
# PostgreSQL in one pass; the end-to-end tests that lean on the catalog then run once more with
# each gateway's catalog in PostgreSQL (TRAILGATE_TEST_CATALOG=postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --locked "$@"
TRAILGATE_TEST_CATALOG=postgres cargo test --locked -p trailgate \
  --test control_api --test session_api --test settings_policies "$@"
