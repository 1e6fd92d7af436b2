#!/usr/bin/env bash
# The warm path (issue 26): a message opened, and sealed, under a session
# key already in memory (`cargo bench --bench session`), each figure
# printed beside the one recorded last in benches/warm-path.last, with the
# change. A guard for people, not CI: run it before and after a change to
# the parse or open path.
#
#   bash benches/warm-path.sh            print, compare
#   bash benches/warm-path.sh --record   and record these figures as the last
#   bash benches/warm-path.sh --instructions [--record]
#       instructions per operation instead (examples/warm_open.rs under
#       valgrind, N and 6N iterations, the difference over 5N): the same
#       on a busy machine, where wall time is noise. Valgrind's CPU has no
#       AVX-512, so the crypto's share differs from the real one; the
#       parse and restore code counts the same. Compared with
#       benches/warm-path-instructions.last.
#
# Targets (issue 26): SIP message opened <= 2.5 us, envelope <= 1.5 us,
# sealed <= 2.5 us.
set -euo pipefail
cd "$(dirname "$0")/.."
last=benches/warm-path.last
if [ "${1:-}" = --instructions ]; then
  shift
  command -v valgrind >/dev/null || { echo "warm-path.sh: --instructions needs valgrind (apt-get install valgrind)" >&2; exit 2; }
  last=benches/warm-path-instructions.last
  cargo build --profile bench --example warm_open 2>/dev/null
  bin=target/release/examples/warm_open
  refs() { valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    awk '/I *refs/ { gsub(",", "", $4); print $4 }'; }
  n=2000
  now=$(mktemp)
  trap 'rm -f "$now"' EXIT
  for what in sip envelope seal; do
    a=$(refs "$what" "$n"); b=$(refs "$what" $((6 * n)))
    printf '%s\t%d\n' "$what" $(((b - a) / (5 * n))) >>"$now"
  done
  printf '%-12s %14s %14s %8s\n' "warm_open" "now (instr)" "last (instr)" "change"
  while IFS=$'\t' read -r name v; do
    before=$( (grep -F "$name"$'\t' "$last" 2>/dev/null || true) | cut -f2)
    change=-
    [ -n "$before" ] && change=$(awk -v a="$v" -v b="$before" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }')
    printf '%-12s %14s %14s %8s\n' "$name" "$v" "${before:--}" "$change"
  done <"$now"
  if [ "${1:-}" = --record ]; then
    cp "$now" "$last"
    echo "recorded in $last"
  fi
  exit 0
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench --bench session -- --warm-up-time 2 --measurement-time 5 >"$out" 2>/dev/null
# "session/NAME" then "time: [lo MEDIAN hi]": NAME and the median in us.
awk '/^session\// { name = $0; sub(/^session\//, "", name); sub(/ *$/, "", name) }
     /time:/ && name != "" {
       v = $4; u = $5
       us = (u == "ns") ? v / 1000 : (u == "ms") ? v * 1000 : v
       printf "%s\t%.2f\n", name, us; name = "" }' "$out" >"$out.now"
printf '%-40s %10s %10s %8s\n' "session/" "now (us)" "last (us)" "change"
while IFS=$'\t' read -r name now; do
  before=$( (grep -F "$name"$'\t' "$last" 2>/dev/null || true) | cut -f2)
  if [ -n "$before" ]; then
    change=$(awk -v a="$now" -v b="$before" 'BEGIN { printf "%+.0f%%", (a / b - 1) * 100 }')
  else
    before=-; change=-
  fi
  printf '%-40s %10s %10s %8s\n' "$name" "$now" "$before" "$change"
done <"$out.now"
if [ "${1:-}" = --record ]; then
  cp "$out.now" "$last"
  echo "recorded in $last"
fi
rm -f "$out.now"
