#!/usr/bin/env bash
# The gateway under load through the real path, on the release build:
# tests/gateway.rs's 100-concurrent-sessions test (100 HTTPS clients log
# in and open the destination at once; each open is a call from the
# gateway's pseudo user agent through relay A and relay B to `sipseal
# terminal`, sealed, with a TLS data channel; then 10 of the accesses
# fetch 2 MiB each at once). RUNS runs (default 3); each prints its
# line: the open's setup time at p50 and p99 (login excluded), and the
# relayed throughput over the data channels.
#
#   bash benches/gateway-load.sh [RUNS]
#
# Figures: docs/guide/10-gateway.md.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo test --release --test gateway --no-run --quiet 2>/dev/null
for _ in $(seq "$runs"); do
    cargo test --release --quiet --test gateway a_hundred_concurrent_sessions \
        -- --nocapture 2>&1 | grep '^100 sessions'
done
