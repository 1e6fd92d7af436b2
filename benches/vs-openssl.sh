#!/usr/bin/env bash
# Time `sipseal seal`/`open` against `openssl cms -encrypt`/`-decrypt` in one
# run, on the same SDP and the same demo keys, per invocation (process start
# included, as a shell script pays it). Uses hyperfine when installed, else a
# plain loop. Prints each mean and the ratio sipseal/openssl. Both tools write
# to standard output (discarded), so neither pays for a durable file write
# (`sipseal -o` fsyncs before it renames; `openssl -out` does not).
#
#   bash benches/vs-openssl.sh [RUNS]      (default 200 runs per command)
#
# The same two with EC P-256 recipients (keys/*-ec: KeyAgreeRecipientInfo)
# against `openssl cms` with the same EC certificates.
#
# Targets (issue 15): open <= 0.45 x openssl -decrypt; seal to 3 recipients
# <= 0.5 x openssl -encrypt; both for RSA-2048 and for P-256. Exit status 1
# when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
cargo build --release --quiet
bin=target/release/sipseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# seal and open record the session key (issue 5): into a scratch store.
export SIPSEAL_STATE="$work/state"

psk_hex=$(sed -n 's/^key: *//p' keys/psk/alice-proxy-a.yaml)
psk_id_hex=$(printf 'alice-proxy-a' | od -An -tx1 | tr -d ' \n')
printf 'Content-Type: application/sdp\r\n\r\n' >"$work/entity"
cat samples/offer.sdp >>"$work/entity"
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem >"$work/sealed.sip"
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem --body-only >"$work/sealed.der"
"$bin" seal samples/invite.sip --peer keys/bob-ec/cert.pem >"$work/sealed-ec.sip"
"$bin" seal samples/invite.sip --peer keys/bob-ec/cert.pem --body-only >"$work/sealed-ec.der"

oaep=(-keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256)
declare -A cmd
cmd[sipseal_seal3]="$bin seal samples/invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem --disclose psk:keys/psk/alice-proxy-a.yaml"
cmd[openssl_encrypt3]="openssl cms -encrypt -binary -outform DER -aes-256-gcm -in $work/entity -recip keys/bob/cert.pem ${oaep[*]} -recip keys/proxy-a/cert.pem ${oaep[*]} -secretkey $psk_hex -secretkeyid $psk_id_hex"
cmd[sipseal_open]="$bin open $work/sealed.sip --identity keys/bob"
cmd[openssl_decrypt]="openssl cms -decrypt -binary -inform DER -in $work/sealed.der -recip keys/bob/cert.pem -inkey keys/bob/key.pem"
cmd[sipseal_seal3_ec]="$bin seal samples/invite.sip --peer keys/bob-ec/cert.pem --disclose keys/proxy-a-ec/cert.pem --disclose keys/proxy-b-ec/cert.pem"
cmd[openssl_encrypt3_ec]="openssl cms -encrypt -binary -outform DER -aes-256-gcm -in $work/entity -recip keys/bob-ec/cert.pem -recip keys/proxy-a-ec/cert.pem -recip keys/proxy-b-ec/cert.pem"
cmd[sipseal_open_ec]="$bin open $work/sealed-ec.sip --identity keys/bob-ec"
cmd[openssl_decrypt_ec]="openssl cms -decrypt -binary -inform DER -in $work/sealed-ec.der -recip keys/bob-ec/cert.pem -inkey keys/bob-ec/key.pem"

# Sanity: every command works before it is timed.
for k in "${!cmd[@]}"; do eval "${cmd[$k]}" >/dev/null; done
eval "${cmd[openssl_decrypt]}" | cmp -s - "$work/entity" || {
  echo "openssl did not decrypt sipseal's envelope" >&2
  exit 2
}

source benches/timing.sh
time_all "$runs" sipseal_seal3 openssl_encrypt3 sipseal_open openssl_decrypt \
  sipseal_seal3_ec openssl_encrypt3_ec sipseal_open_ec openssl_decrypt_ec

seal_ratio=$(ratio "${mean_ms[sipseal_seal3]}" "${mean_ms[openssl_encrypt3]}")
open_ratio=$(ratio "${mean_ms[sipseal_open]}" "${mean_ms[openssl_decrypt]}")
seal_ec=$(ratio "${mean_ms[sipseal_seal3_ec]}" "${mean_ms[openssl_encrypt3_ec]}")
open_ec=$(ratio "${mean_ms[sipseal_open_ec]}" "${mean_ms[openssl_decrypt_ec]}")
echo "timing: $tool, per invocation (mean)"
printf '%-52s %9s ms\n' "sipseal seal (bob, proxy-a, PSK; AES-256-GCM, OAEP)" "${mean_ms[sipseal_seal3]}"
printf '%-52s %9s ms\n' "openssl cms -encrypt (same 3 recipients)" "${mean_ms[openssl_encrypt3]}"
printf '%-52s %9s ms\n' "sipseal open --identity keys/bob" "${mean_ms[sipseal_open]}"
printf '%-52s %9s ms\n' "openssl cms -decrypt -recip bob -inkey bob" "${mean_ms[openssl_decrypt]}"
printf '%-52s %9s ms\n' "sipseal seal (bob-ec, proxy-a-ec, proxy-b-ec; P-256)" "${mean_ms[sipseal_seal3_ec]}"
printf '%-52s %9s ms\n' "openssl cms -encrypt (same 3 EC recipients)" "${mean_ms[openssl_encrypt3_ec]}"
printf '%-52s %9s ms\n' "sipseal open --identity keys/bob-ec" "${mean_ms[sipseal_open_ec]}"
printf '%-52s %9s ms\n' "openssl cms -decrypt -recip bob-ec -inkey bob-ec" "${mean_ms[openssl_decrypt_ec]}"
echo "ratio seal/encrypt, RSA:   $seal_ratio (target <= 0.5)"
echo "ratio open/decrypt, RSA:   $open_ratio (target <= 0.45)"
echo "ratio seal/encrypt, P-256: $seal_ec (target <= 0.5)"
echo "ratio open/decrypt, P-256: $open_ec (target <= 0.45)"
awk -v s="$seal_ratio" -v o="$open_ratio" -v se="$seal_ec" -v oe="$open_ec" \
  'BEGIN{exit !(s <= 0.5 && o <= 0.45 && se <= 0.5 && oe <= 0.45)}' || {
  echo "a target was missed" >&2
  exit 1
}
