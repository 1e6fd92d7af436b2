#!/usr/bin/env bash
# Session store scaling (issue S6): time `seal` (alice's store) and `proxy`
# (proxy-a's store) with an empty store and with N sessions already stored
# (default 5000), per invocation, process start included. The stores are
# filled by writing the v1 layout (one sessions.yaml per identity); sipseal
# migrates it on its first write. Uses farm-bench when installed, else a loop.
#
#   bash benches/store.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
runs=${2:-20}
cargo build --release --quiet
bin=$PWD/target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fill() { # fill DIR IDENTITY ROLE N
  mkdir -p "$1/$2"
  awk -v id="$3" -v role="$4" -v n="$5" 'BEGIN {
    printf "version: 1\nidentity: %s\nsessions:\n", id;
    for (i = 0; i < n; i++) {
      printf "- call_id: filler-%06d@a.example.com\n  reference: %032x\n  kek: %064x\n  role: %s\n  peer: sip:alice@a.example.com\n  created: 2026-11-29T08:00:00Z\n  uses: 0\n  max_uses: 100\n  expiry: 2099-01-01T00:00:00Z\n", i, i + 1, i + 1, role
    } }' > "$1/$2/sessions.yaml"
  chmod 600 "$1/$2/sessions.yaml"
}

"$bin" --seed 01 seal samples/invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem \
  -o "$work/sealed.sip" --state "$work/scratch" 2>/dev/null

measure() { # measure LABEL STATE
  local st=$2
  # One run migrates the v1 file (if any); then time steady-state writes.
  "$bin" seal samples/invite.sip --peer keys/bob/cert.pem --state "$st" -o /dev/null 2>/dev/null
  "$bin" proxy "$work/sealed.sip" --identity keys/proxy-a --state "$st" -o /dev/null 2>/dev/null
  for cmd in "seal samples/invite.sip --peer keys/bob/cert.pem --state $st -o /dev/null" \
             "proxy $work/sealed.sip --identity keys/proxy-a --state $st -o /dev/null"; do
    if command -v farm-bench >/dev/null; then
      printf '%s: %s\n' "$1" "${cmd%% *}"
      farm-bench -n "$runs" -- "$bin" $cmd 2>&1 | grep -E 'wall|peak' | head -2
    else
      local start end
      start=$(date +%s%N)
      for _ in $(seq "$runs"); do "$bin" $cmd 2>/dev/null; done
      end=$(date +%s%N)
      printf '%s: %-6s %.2f ms\n' "$1" "${cmd%% *}" "$(echo "($end - $start) / $runs / 1000000" | bc -l)"
    fi
  done
}

measure empty "$work/empty"
fill "$work/full" sip_alice@a.example.com sip:alice@a.example.com ua "$n"
fill "$work/full" sip_proxy-a.a.example.com sip:proxy-a.a.example.com relay "$n"
measure "$n-sessions" "$work/full"
