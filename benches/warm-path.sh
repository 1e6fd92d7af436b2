#!/usr/bin/env bash
# The warm path (issue 26): a message opened, and sealed, under a session
# key already in memory (`cargo bench --bench session`), each figure
# printed beside the one recorded last in benches/warm-path.last, with the
# change. A guard for people, not CI: run it before and after a change to
# the parse or open path.
#
#   bash benches/warm-path.sh            print, compare
#   bash benches/warm-path.sh --record   and record these figures as the last
#
# Targets (issue 26): SIP message opened <= 2.5 us, envelope <= 1.5 us,
# sealed <= 2.5 us.
set -euo pipefail
cd "$(dirname "$0")/.."
last=benches/warm-path.last
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
