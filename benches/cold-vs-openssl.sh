#!/usr/bin/env bash
# The relay's cold path (benches/cold.rs: open a sealed INVITE addressed to
# this relay, in process, key loaded) against OpenSSL's own private-key
# speed on one core: `openssl speed -seconds 3 rsa2048` (RSA-2048 private
# operations, sign/s) and `openssl speed -seconds 3 ecdhp256` (op/s).
# RUNS alternating runs of both (default 5); each pair gives a ratio
# (sipseal opens per second / openssl operations per second); the median,
# min and max are printed, as the machine is noisy.
#
#   bash benches/cold-vs-openssl.sh [RUNS]
#
# Targets (issue 15): RSA-2048 >= 0.9, P-256 >= 0.8.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo bench --bench cold --no-run --quiet 2>/dev/null
bin=$(ls -t target/release/deps/cold-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ops/s from criterion's median time per iteration ("time: [lo MEDIAN hi]").
criterion_ops() {
  "$bin" --bench --noplot --measurement-time 3 "$1" 2>/dev/null |
    awk '/time:/ { v = $5; u = $6; gsub(/\[/, "", v);
                   s = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : 1;
                   printf "%.1f", 1 / (v * s) }'
}
rsa_speed() { openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa +2048 bits/ { print $(NF-1) }'; }
ec_speed() { openssl speed -seconds 3 ecdhp256 2>/dev/null | awk '/ecdh \(nistp256\)/ { print $NF }'; }

for ((i = 1; i <= runs; i++)); do
  a=$(criterion_ops cold/rsa-2048); b=$(rsa_speed)
  echo "rsa $a $b" >>"$work/pairs"
  a=$(criterion_ops cold/p256); b=$(ec_speed)
  echo "p256 $a $b" >>"$work/pairs"
done

summary() {
  awk -v k="$1" '$1 == k { print $2, $3, $2 / $3 }' "$work/pairs" | sort -k3 -g |
    awk -v k="$1" -v t="$2" '{ a[NR] = $0; r[NR] = $3 }
      END { m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
            printf "%-5s ratio median %.2f (min %.2f, max %.2f; target >= %s) over %d pairs\n", k, m, r[1], r[NR], t, NR;
            for (i = 1; i <= NR; i++) { split(a[i], f, " "); printf "      sipseal %8.0f opens/s, openssl %8.0f ops/s\n", f[1], f[2] } }'
}
echo "relay cold path (open in process) / openssl speed, one core, $runs alternating runs"
summary rsa 0.9
summary p256 0.8
