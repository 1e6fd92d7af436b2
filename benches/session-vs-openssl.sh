#!/usr/bin/env bash
# Time opening a session message (docs/SPEC.md §3.2: one KEKRecipientInfo under the
# session reference, no public-key operation) per invocation, process start
# included: `sipseal open` finding the key in its session store, against
# `openssl cms -decrypt -secretkey HEX -secretkeyid HEX` given the key that
# `sipseal session export` prints. Uses hyperfine when installed, else a
# plain loop. Both write to standard output (discarded).
#
#   bash benches/session-vs-openssl.sh [RUNS]      (default 200 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
cargo build --release --quiet
bin=target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SIPSEAL_STATE="$work/state"

# The session: alice seals the INVITE for bob, bob opens it (both store the key).
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem -o "$work/invite.sip"
"$bin" open "$work/invite.sip" --identity keys/bob >/dev/null
# Later messages under the session key: as a SIP message, and its DER body.
"$bin" seal --session samples/invite.sip -o "$work/session.sip"
"$bin" seal --session --body-only samples/invite.sip -o "$work/session.der"
call_id=$(sed -n 's/^Call-ID: *//p' samples/invite.sip | tr -d '\r')
read -r _ kek _ kekid < <("$bin" session export "$call_id" --as sip:bob@b.example.com)

declare -A cmd
cmd[sipseal_open_sip]="$bin open $work/session.sip --identity keys/bob"
cmd[sipseal_open_der]="$bin open $work/session.der --identity keys/bob"
cmd[openssl_secretkey]="openssl cms -decrypt -binary -inform DER -in $work/session.der -secretkey $kek -secretkeyid $kekid"
order=(sipseal_open_sip sipseal_open_der openssl_secretkey)

# Sanity: every command works, and both tools give the same plaintext.
for k in "${order[@]}"; do eval "${cmd[$k]}" >/dev/null; done
cmp -s <(eval "${cmd[openssl_secretkey]}") <(eval "${cmd[sipseal_open_der]}") || {
  echo "sipseal and openssl disagree on the plaintext" >&2
  exit 2
}

source benches/timing.sh
time_all "$runs" "${order[@]}"

echo "timing: $tool, per invocation (mean)"
printf '%-52s %9s ms\n' "sipseal open session.sip --identity keys/bob" "${mean_ms[sipseal_open_sip]}"
printf '%-52s %9s ms\n' "sipseal open session.der --identity keys/bob" "${mean_ms[sipseal_open_der]}"
printf '%-52s %9s ms\n' "openssl cms -decrypt -secretkey -secretkeyid" "${mean_ms[openssl_secretkey]}"
echo "ratio sipseal (SIP message)/openssl: $(ratio "${mean_ms[sipseal_open_sip]}" "${mean_ms[openssl_secretkey]}")"
echo "ratio sipseal (DER)/openssl: $(ratio "${mean_ms[sipseal_open_der]}" "${mean_ms[openssl_secretkey]}")"
