#!/usr/bin/env bash
# Timing uniformity of a failed key-transport decryption (not CI). bob opens
# four envelopes, RUNS times each, interleaved (A B C D A B C D ...):
#   valid     sealed for bob (RSA-OAEP): opens, exit 0
#   oaep      the same with one byte of the OAEP block changed
#   v15pad    a PKCS#1 v1.5 envelope whose block decrypts to bad padding
#             (00 02 and no zero separator, encrypted raw to bob's key)
#   wrongkey  an OAEP block made for carol's key, under bob's identifier
# and prints each case's exit code and message (the three failures must be
# identical) and its wall-time distribution per invocation (min, p10,
# median, p90). Whole processes: differences far below the spread of a
# process start (tens of microseconds) do not show here; the in-process
# figures are `cargo bench --bench cold`.
#
#   bash benches/uniformity.sh [RUNS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
cargo build --release --quiet
bin=$PWD/target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SIPSEAL_STATE="$work/state"

"$bin" seal samples/invite.sip --peer keys/bob/cert.pem --body-only >"$work/valid.der" 2>/dev/null
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem --rsa-padding pkcs1v15 --body-only >"$work/v15.der" 2>/dev/null
"$bin" seal samples/invite.sip --peer keys/carol/cert.pem --body-only >"$work/carol.der" 2>/dev/null
openssl x509 -in keys/bob/cert.pem -pubkey -noout >"$work/bob.pub"
# 00 02, then 254 non-zero bytes: PKCS#1 v1.5 padding without its separator.
python3 -c 'import sys; sys.stdout.buffer.write(b"\x00\x02" + bytes((i % 255) + 1 for i in range(254)))' >"$work/block"
openssl pkeyutl -encrypt -pubin -inkey "$work/bob.pub" -pkeyopt rsa_padding_mode:none \
  -in "$work/block" -out "$work/badpad.bin"
python3 - "$work" <<'PY'
import sys, pathlib
w = pathlib.Path(sys.argv[1])
def key_at(der):
    at = der.index(b"\x04\x82\x01\x00") + 4  # the KTRI's 256-byte encryptedKey
    return at
valid = (w / "valid.der").read_bytes()
a = key_at(valid)
oaep = bytearray(valid); oaep[a + 100] ^= 0x01
(w / "oaep.der").write_bytes(oaep)
v15 = bytearray((w / "v15.der").read_bytes()); b = key_at(v15)
v15[b:b + 256] = (w / "badpad.bin").read_bytes()
(w / "v15pad.der").write_bytes(v15)
carol = (w / "carol.der").read_bytes(); c = key_at(carol)
wrong = bytearray(valid); wrong[a:a + 256] = carol[c:c + 256]
(w / "wrongkey.der").write_bytes(wrong)
PY

cases=(valid oaep v15pad wrongkey)
for k in "${cases[@]}"; do
  set +e
  "$bin" open "$work/$k.der" --identity keys/bob >/dev/null 2>"$work/$k.err"
  echo $? >"$work/$k.code"
  set -e
done
# The order rotates every round: the valid open writes the session store
# (fsync), and the disk's work after it slows whichever case comes next.
for ((i = 0; i < runs; i++)); do
  for ((j = 0; j < ${#cases[@]}; j++)); do
    k=${cases[$(((i + j) % ${#cases[@]}))]}
    s=$(date +%s%N)
    "$bin" open "$work/$k.der" --identity keys/bob >/dev/null 2>&1 || true
    e=$(date +%s%N)
    echo $(((e - s) / 1000)) >>"$work/$k.us"
  done
done
echo "bob opens each envelope $runs times, interleaved in rotating order; wall time per invocation in microseconds"
printf '%-9s %4s %7s %7s %7s %7s  %s\n' case exit min p10 median p90 message
for k in "${cases[@]}"; do
  stats=$(sort -n "$work/$k.us" | awk '{ v[NR] = $1 } END { printf "%7d %7d %7d %7d", v[1], v[int(NR*0.1)+1], v[int(NR*0.5)+1], v[int(NR*0.9)+1] }')
  msg=$(grep -v '^warning' "$work/$k.err" | head -1 | sed "s|$work/||" || true)
  printf '%-9s %4s %s  %s\n' "$k" "$(cat "$work/$k.code")" "$stats" "${msg:-(opened)}"
done
same=$(for k in oaep v15pad wrongkey; do echo "$(cat "$work/$k.code") $(grep -v '^warning' "$work/$k.err" | sed "s|$work/$k.der|F|" | tr '\n' ' ' || true)"; done | sort -u | wc -l)
if [ "$same" = 1 ]; then
  echo "the three failures: the same exit code and the same message"
else
  echo "the three failures differ in exit code or message" >&2
  exit 1
fi
