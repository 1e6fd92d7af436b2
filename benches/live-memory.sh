#!/usr/bin/env bash
# Memory per 10,000 concurrent dialogs at a designated `sipseal relay`:
# SIPp places N sealed-INVITE dialogs through it (INVITE, 180, 200, ACK;
# no BYE, so every dialog stays up and its session key stays stored) and
# this prints what the relay holds for them: its resident memory (the
# cache in front of the store), the state directory on disk, and, with
# --state redis://, Redis's used_memory.
#
# Usage: bash benches/live-memory.sh [N [RATE]]   (default 10000 at 500 cps)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rate=${2:-500}
bin=$PWD/target/release/sipseal
[ -x "$bin" ] || cargo build --release
for tool in sipp redis-server redis-cli; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install sip-tester redis-server)"; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
UAS=26090; PROXY=26070; UAC=26060; REDIS=26379
CT='application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m'

source benches/sealed-call.sh
sealed_call "$work" "$bin"
# The sample scenarios without their BYE: the dialogs stay up.
python3 - "$PWD/samples/sipp" "$work" <<'PY'
import re, sys
uac = open(sys.argv[1] + "/uac-sealed.xml").read()
uac = re.sub(r'\s*<pause milliseconds="100"/>.*?<recv response="200" crlf="true"/>', "", uac, flags=re.S)
open(sys.argv[2] + "/uac.xml", "w").write(uac)
uas = open(sys.argv[1] + "/uas-sealed.xml").read()
uas = re.sub(r'\s*<recv request="BYE"/>.*?</send>', "", uas, count=1, flags=re.S)
open(sys.argv[2] + "/uas.xml", "w").write(uas)
PY
pib=$(cat "$work/Proxy-Inspect-Body.txt")
cid=$(cat "$work/Content-ID.txt")

rss() { awk '/VmRSS/ {print $2 * 1024}' /proc/"$1"/status; }

run() { # state
    "$bin" relay --listen tcp:127.0.0.1:$PROXY --identity keys/proxy-a-ec \
        --next tcp:127.0.0.1:$UAS --state "$1" --bindings "$work/bindings.yaml" --quiet \
        2> "$work/relay.log" &
    local relay=$!
    pids+=("$relay")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PROXY) 2>/dev/null && break; sleep 0.05; done
    # One call first, so that keys, TLS-free connections and buffers exist.
    (cd "$work" && sipp -sf uas.xml -i 127.0.0.1 -p $UAS -t t1 -m $(( n + 1 )) -nostdin \
        -timeout 600s -key ctype "$CT" > /dev/null 2>&1) &
    local uas=$!
    sleep 0.3
    local sipp_args=(127.0.0.1:$PROXY -sf uac.xml -i 127.0.0.1 -t t1 -nostdin -timeout 600s
        -key target "sip:bob@127.0.0.1:$UAS;transport=tcp" -key pib "$pib" -key cid "$cid"
        -key ctype "$CT")
    (cd "$work" && sipp "${sipp_args[@]}" -p $UAC -m 1 > /dev/null 2>&1)
    local before; before=$(rss $relay)
    local t0; t0=$(date +%s)
    (cd "$work" && sipp "${sipp_args[@]}" -p $((UAC + 1)) -m "$n" -r "$rate" -cid_str 'mem-%u-%p@a.example.com' \
        > /dev/null 2>&1) || echo "(SIPp reported failed calls)"
    local after; after=$(rss $relay)
    kill $uas 2>/dev/null || true
    echo "$(( $(date +%s) - t0 )) s for $n dialogs; relay resident memory $((before / 1024)) KiB -> $((after / 1024)) KiB:" \
        "$(( (after - before) / n )) B per dialog, $(( (after - before) * 10000 / n / 1024 )) KiB per 10,000"
    kill $relay; wait $relay 2>/dev/null || true
}

echo "== state directory (cache in front of the file store)"
run "$work/state"
files=$(find "$work/state" -path '*sessions*' -name '*.yaml' | wc -l)
bytes=$(find "$work/state" -path '*sessions*' -name '*.yaml' -printf '%s\n' | awk '{s += $1} END {print s}')
echo "on disk: $files session files, $bytes bytes: $(( bytes / files )) B per dialog (plus a 4 KiB block each)"

echo "== Redis (cache in front of redis://)"
redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no > /dev/null 2>&1 &
pids+=("$!")
sleep 0.5
used0=$(redis-cli -p $REDIS info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
run "redis://127.0.0.1:$REDIS"
used1=$(redis-cli -p $REDIS info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
keys=$(redis-cli -p $REDIS dbsize | tr -d '\r')
echo "Redis: $keys keys, used_memory $((used0 / 1024)) KiB -> $((used1 / 1024)) KiB:" \
    "$(( (used1 - used0) / n )) B per dialog, $(( (used1 - used0) * 10000 / n / 1024 )) KiB per 10,000"
