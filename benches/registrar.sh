#!/usr/bin/env bash
# Registrations per second, per invocation (process start included, as a
# shell script pays it): N users each send an authorized REGISTER with a
# fresh P-256 CSR, and `sipseal registrar` answers each (Digest check, CSR
# check, certificate issued by the demo CA, the registry written with
# fsync, the 200 OK signed). Also the 401 round (no credentials) for
# comparison. The in-process figure is `cargo bench --bench registrar`.
#
#   bash benches/registrar.sh [N]      (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
cargo build --release --quiet
bin=$PWD/target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export SIPSEAL_STATE="$work/state"
ca=$OLDPWD/keys/ca/a.example.com
reg=$OLDPWD/keys/proxy-a
printf 'bench-pw\n' > pw
for ((i = 0; i < n; i++)); do
  "$bin" registrar passwd --users users.yaml --realm a.example.com --user "sip:u$i@a.example.com" --password-file pw 2>/dev/null
done
registrar() { "$bin" registrar "$1" --realm a.example.com --ca "$ca" --identity "$reg" --users users.yaml; }
# Each user's first REGISTER and its 401, then the authorized one with the
# user's own CSR (not timed).
for ((i = 0; i < n; i++)); do
  "$bin" register --uri "sip:u$i@a.example.com" --contact "sip:u$i@192.0.2.10" -o "r$i.sip"
  registrar "r$i.sip" >"c$i.sip" 2>/dev/null || true
  "$bin" keys generate --type p256 --uri "sip:u$i@a.example.com" --csr --out "k$i" >/dev/null 2>&1
  "$bin" register --uri "sip:u$i@a.example.com" --contact "sip:u$i@192.0.2.10" --csr "k$i/csr.pem" \
    --challenge "c$i.sip" --password-file pw -o "a$i.sip"
done
start=$(date +%s%N)
for ((i = 0; i < n; i++)); do registrar "r$i.sip" >/dev/null 2>&1 || true; done
mid=$(date +%s%N)
ok=0
for ((i = 0; i < n; i++)); do
  if registrar "a$i.sip" 2>/dev/null | head -1 | grep -q '^SIP/2.0 200'; then ok=$((ok + 1)); fi
done
end=$(date +%s%N)
awk -v n="$n" -v a="$start" -v b="$mid" -v c="$end" -v ok="$ok" 'BEGIN {
  printf "%d challenges (401):            %.2f ms each, %.0f/s\n", n, (b - a) / n / 1e6, n / ((b - a) / 1e9);
  printf "%d registrations (200, %d ok): %.2f ms each, %.0f/s\n", n, ok, (c - b) / n / 1e6, n / ((c - b) / 1e9) }'
[ "$ok" = "$n" ] || { echo "only $ok of $n registrations got 200" >&2; exit 1; }
