#!/usr/bin/env bash
# What one `sipseal` invocation costs a shell script, whole process (start,
# key loading, the work, exit), in PAIRED runs: A and B alternate, each
# pair gives a ratio A/B, and the MEDIAN of those ratios is the figure (a
# drift in the machine's speed moves both halves of a pair alike).
#
#   open    `sipseal open` (RSA-2048, OAEP)  vs `openssl cms -decrypt`
#   seal    `sipseal seal` to 3 RSA-2048 recipients (bob, proxy-a, proxy-b)
#                                            vs `openssl cms -encrypt`, same 3
#   version `sipseal --version`              vs a Rust hello world built with
#                                               the same release profile
#
# `open` and `seal` run on one message again and again: the session key of
# that one call is found already stored (`open`: the same key, nothing
# written) or replaced (`seal`: a new key for the call, written). The
# `_new` rows run each on a call of its own (one sealed message per
# Call-ID): the key is stored in a new file, as a script sealing or opening
# the first message of each call does.
#
# sipseal's state directory is its default location (XDG_STATE_HOME set to
# a directory under target/, on the repository's disk, not tmpfs): `open`
# and `seal` record the session key there, atomically and without fsync
# (docs/SPEC.md §5). Both tools write to standard output (discarded).
#
#   bash benches/per-invocation.sh [PAIRS]     (default 41)
#
# Targets (issue 26): open <= 0.4, seal <= 0.5, version <= 1.2. Exit
# status 1 when one is missed. Timer: bash's EPOCHREALTIME around each
# command (fork and exec included, the same for A and B).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-41}
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The binary as `cargo install` leaves it (README: install): a copy of the
# one the linker wrote. The linker's own file starts with about 30 more
# page faults a run on this machine's ext4 (369 against 339 for `open`,
# perf stat), its page cache filled by many small writes; openssl's binary
# has long been a settled file. The hello world is copied alike.
mkdir "$work/bin"
cp target/release/sipseal "$work/bin/sipseal"
bin=$work/bin/sipseal
export XDG_STATE_HOME=$PWD/target/bench-state
rm -rf "$XDG_STATE_HOME"
unset SIPSEAL_STATE

# The yardstick for --version: hello world, same profile as sipseal's.
hello=target/bench-hello
if [ ! -x "$hello/target/release/hello" ]; then
  rm -rf "$hello"
  cargo new --quiet --vcs none --name hello "$hello"
  sed -n '/^\[profile.release\]/,/^$/p' Cargo.toml >>"$hello/Cargo.toml"
  (cd "$hello" && cargo build --release --quiet)
fi

printf 'Content-Type: application/sdp\r\n\r\n' >"$work/entity"
cat samples/offer.sdp >>"$work/entity"
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem >"$work/sealed.sip" 2>/dev/null
"$bin" seal samples/invite.sip --peer keys/bob/cert.pem --body-only >"$work/sealed.der" 2>/dev/null
oaep="-keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256"

# A new call each run as well (a script sealing or opening the first
# message of each call): one sealed message per Call-ID, for every run.
runs_needed=$((pairs + 3))
for ((i = 0; i < runs_needed; i++)); do
  sed "s/^Call-ID: .*/Call-ID: bench-$i@a.example.com/" samples/invite.sip >"$work/invite-$i.sip"
  "$bin" seal "$work/invite-$i.sip" --peer keys/bob/cert.pem >"$work/sealed-$i.sip" 2>/dev/null
done
rm -rf "$XDG_STATE_HOME"

declare -A a b
a[open]="$bin open $work/sealed.sip --identity keys/bob"
b[open]="openssl cms -decrypt -binary -inform DER -in $work/sealed.der -recip keys/bob/cert.pem -inkey keys/bob/key.pem"
a[seal]="$bin seal samples/invite.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem --disclose keys/proxy-b/cert.pem"
b[seal]="openssl cms -encrypt -binary -outform DER -aes-256-gcm -in $work/entity -recip keys/bob/cert.pem $oaep -recip keys/proxy-a/cert.pem $oaep -recip keys/proxy-b/cert.pem $oaep"
a[open_new]="$bin open $work/sealed-@.sip --identity keys/bob"
b[open_new]="${b[open]}"
a[seal_new]="$bin seal $work/invite-@.sip --peer keys/bob/cert.pem --disclose keys/proxy-a/cert.pem --disclose keys/proxy-b/cert.pem"
b[seal_new]="${b[seal]}"
a[version]="$bin --version"
cp "$hello/target/release/hello" "$work/bin/hello"
b[version]="$work/bin/hello"
declare -A target=([open]=0.4 [seal]=0.5 [version]=1.2 [open_new]=0.4 [seal_new]=0.5)

# Every command works before it is timed; openssl opens what sipseal sealed.
for k in open seal version; do
  ${a[$k]} >/dev/null 2>&1 || { echo "$k: ${a[$k]} failed" >&2; exit 2; }
  ${b[$k]} >/dev/null 2>&1 || { echo "$k: ${b[$k]} failed" >&2; exit 2; }
done
${b[open]} | cmp -s - "$work/entity" || { echo "openssl did not open sipseal's envelope" >&2; exit 2; }

# One run of a command line, in microseconds; `@` in it is the run's number.
n=0
run_us() {
  local line=${1//@/$n} t0=$EPOCHREALTIME
  $line >/dev/null 2>&1
  local t1=$EPOCHREALTIME
  echo $(((${t1/./} - ${t0/./})))
}

missed=0
echo "per invocation, $pairs paired runs each (median; min..max of the pair ratios)"
for k in open seal open_new seal_new version; do
  n=0
  for _ in 1 2 3; do run_us "${a[$k]}" >/dev/null; n=$((n + 1)); run_us "${b[$k]}" >/dev/null; done
  : >"$work/$k"
  for ((i = 0; i < pairs; i++)); do
    ta=$(run_us "${a[$k]}")
    n=$((n + 1))
    echo "$ta $(run_us "${b[$k]}")" >>"$work/$k"
  done
  median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  ams=$(cut -d' ' -f1 "$work/$k" | median | awk '{ printf "%.2f", $1 / 1000 }')
  bms=$(cut -d' ' -f2 "$work/$k" | median | awk '{ printf "%.2f", $1 / 1000 }')
  ratios=$(awk '{ printf "%.3f\n", $1 / $2 }' "$work/$k" | sort -g)
  line="$ams $bms $(echo "$ratios" | median) $(echo "$ratios" | head -1) $(echo "$ratios" | tail -1)"
  read -r ams bms med lo hi <<<"$line"
  ok=$(awk -v m="$med" -v t="${target[$k]}" 'BEGIN { print (m <= t) ? "ok" : "MISSED" }')
  [ "$ok" = ok ] || missed=1
  printf '%-9s sipseal %7s ms  vs %7s ms   ratio %s (%s..%s)  target <= %s  %s\n' \
    "$k" "$ams" "$bms" "$med" "$lo" "$hi" "${target[$k]}" "$ok"
done
exit $missed
