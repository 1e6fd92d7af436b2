#!/usr/bin/env bash
# What `--firewall nft` adds to a message that changes a call's pinholes:
# the relay runs `nft -f -` with the change (one transaction) and waits for
# its exit before it forwards. This times exactly that wait, the way
# sipseal's Nft::apply does it (spawn, script on stdin, exit status), for
# the real scripts of one call (offer, offer+answer, BYE) in turn, N times,
# inside a network namespace of its own (needs root: `unshare -n`).
#
#   bash benches/firewall-delay.sh [N]     (default 300 calls)
#
# Prints p50 / p99 / max per kind of step, in milliseconds. The sets grow
# with the calls (each call's elements are kept until its BYE step).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
if [ "$(id -u)" != 0 ]; then
  echo "firewall-delay.sh: needs root (a network namespace and nft)" >&2
  exit 2
fi
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=target/release/sipseal
# One call's three scripts, as proxy-a writes them (tests/pinholes.rs flow).
"$bin" --seed 01 build invite --from 'Alice <sip:alice@a.example.com>' \
  --to 'Bob <sip:bob@b.example.com>' --sdp samples/offer.sdp >"$work/plain.sip"
"$bin" --seed 01 seal "$work/plain.sip" --sign keys/alice --peer keys/bob/cert.pem \
  --disclose keys/proxy-a/cert.pem >"$work/invite.sip"
proxy() { "$bin" --seed 0a proxy "$1" --identity keys/proxy-a --signer-trust keys/trust.pem \
  --psk keys/psk/alice-proxy-a.yaml --state "$work/state" --pinholes "$2"; }
proxy "$work/invite.sip" "$work/offer.nft" >"$work/fwd.sip"
"$bin" --seed 02 build response 200 --request "$work/fwd.sip" --sdp samples/answer.sdp >"$work/200p.sip"
"$bin" --seed 02 seal "$work/200p.sip" --sign keys/bob --peer keys/alice/cert.pem \
  --disclose psk:keys/psk/alice-proxy-a.yaml >"$work/200.sip"
proxy "$work/200.sip" "$work/answer.nft" >/dev/null
grep -q "element" "$work/offer.nft" || { echo "no pinholes from the offer" >&2; exit 2; }
grep -q "element" "$work/answer.nft" || { echo "no pinholes from the answer" >&2; exit 2; }
# The BYE's script: the answer's elements deleted (add + delete, as sipseal writes it).
{
  sed -n '1,/^}$/p' "$work/answer.nft"
  grep '^add element' "$work/answer.nft" | sed 's/ comment "[^"]*"//' |
    while read -r line; do echo "$line"; echo "${line/#add/delete}"; done
} >"$work/bye.nft"

unshare -n python3 - "$work" "$n" <<'PY'
import subprocess, sys, time, re
work, n = sys.argv[1], int(sys.argv[2])
scripts = {k: open(f"{work}/{k}.nft").read() for k in ("offer", "answer", "bye")}
def run(script):
    t0 = time.perf_counter()
    p = subprocess.Popen(["nft", "-f", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = p.communicate(script.encode())
    t1 = time.perf_counter()
    if p.returncode != 0:
        sys.exit(f"nft failed: {err.decode()}")
    return (t1 - t0) * 1000
times = {k: [] for k in scripts}
for i in range(n):
    # Each call its own addresses, so that the sets grow as calls pile up.
    a, b = 1 + i // 250, 1 + i % 250
    for k in ("offer", "answer"):
        s = scripts[k].replace("192.0.2.", f"10.{a}.{b}.").replace("198.51.100.20", f"10.200.{a}.{b}")
        times[k].append(run(s))
for i in range(n):
    a, b = 1 + i // 250, 1 + i % 250
    s = scripts["bye"].replace("192.0.2.", f"10.{a}.{b}.").replace("198.51.100.20", f"10.200.{a}.{b}")
    times["bye"].append(run(s))
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))]
print(f"nft -f per pinhole change, {n} calls (ms): p50 / p99 / max")
for k, v in times.items():
    print(f"  {k:7s} {pct(v,50):6.2f} / {pct(v,99):6.2f} / {max(v):6.2f}")
PY
