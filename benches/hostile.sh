#!/usr/bin/env bash
# Linear cost on hostile input (issue S4): time `inspect` and `proxy` on
# messages built to be expensive, and print wall seconds and peak memory
# (KiB) per command. Inputs over --max-message-size are refused before they
# are parsed; this script raises the limit to 8MiB so that the parsers
# themselves are measured.
#
#   bash benches/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SIPSEAL_STATE="$work/state"

head=$(sed '/^\r$/,$d' samples/invite.sip | grep -v -i '^content-\(length\|type\)')
sdp=$(sed '1,/^\r$/d' samples/invite.sip)

# 1. N lines of Proxy-Inspect-Body naming the relay.
pib() {
  { printf '%s\r\n' "$head"
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "Proxy-Inspect-Body: <sip:proxy-a.a.example.com>;access=read\r\n" }'
    printf 'Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s' "${#sdp}" "$sdp"; } > "$work/pib-$1.sip"
}
# 2. N short header lines.
short() {
  { printf '%s\r\n' "$head"
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "X: y\r\n" }'
    printf 'Content-Length: 0\r\n\r\n'; } > "$work/short-$1.sip"
}
# 3. An SDP with N streams, each with its own c= line.
streams() {
  local body
  body=$(awk -v n="$1" 'BEGIN { printf "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
    for (i = 0; i < n; i++) printf "m=audio %d RTP/AVP 0\r\nc=IN IP4 10.%d.%d.%d\r\n", 4000 + i % 60000, int(i / 65536), int(i / 256) % 256, i % 256 }')
  { printf '%s\r\n' "$head"
    printf 'Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body"; } > "$work/streams-$1.sip"
}
# 4. N multiparts nested under multipart/signed.
nested() {
  local body
  body=$(awk -v n="$1" 'BEGIN { inner = "Content-Type: text/plain\r\n\r\nhi";
    for (i = 0; i < n; i++) inner = "Content-Type: multipart/mixed; boundary=b" i "\r\n\r\n--b" i "\r\n" inner "\r\n--b" i "--";
    printf "--sig\r\n%s\r\n--sig\r\nContent-Type: application/pkcs7-signature\r\n\r\nxx\r\n--sig--\r\n", inner }')
  { printf '%s\r\n' "$head"
    printf 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=sig\r\n'
    printf 'Content-Length: %d\r\n\r\n%s' "${#body}" "$body"; } > "$work/nested-$1.sip"
}

pib 900; pib 100000; short 900; short 1000000; streams 15000; streams 60000; nested 2000
printf '%-22s %-8s %8s %10s %10s %s\n' input command bytes seconds peak_KiB exit
for f in pib-900 pib-100000 short-900 short-1000000 streams-15000 streams-60000 nested-2000; do
  for c in inspect proxy; do
    args=("$c" "$work/$f.sip" --max-message-size 8MiB)
    [ "$c" = proxy ] && args+=(--identity keys/proxy-a)
    set +e
    /usr/bin/time -f '%e %M %x' -o "$work/t" "$bin" "${args[@]}" >/dev/null 2>&1
    set -e
    read -r s kib code < <(tail -1 "$work/t" | sed 's/Command exited with non-zero status //')
    printf '%-22s %-8s %8d %10s %10s %s\n' "$f" "$c" "$(stat -c %s "$work/$f.sip")" "$s" "$kib" "${code:-0}"
  done
done
