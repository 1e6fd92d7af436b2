#!/usr/bin/env bash
# Live throughput on the loopback, one proxy between SIPp UAC and SIPp UAS
# over TCP (sealed INVITEs exceed 1,300 B), the same sealed-INVITE dialog
# (samples/sipp: INVITE, 180, 200, ACK, BYE, 200) and the same call-rate
# steps for each proxy:
#
#   kamailio    Kamailio 5.6 as a stateless forwarder (kamailio-stateless.cfg)
#   blind       sipseal relay, not a recipient: forwards the sealed body untouched
#   designated  sipseal relay, designated: opens each INVITE (P-256) and the
#               200 under the session key it recorded
#
# For each step: calls placed, failed, and the rate achieved. A proxy's
# rate is the highest step it carries with 0 failed calls at the rate
# asked. Then the latency each proxy adds (SIPp's INVITE->200 response
# time through the proxy minus direct, p50 and p99) at half the lowest
# of those rates.
#
# Usage: bash benches/live-vs-kamailio.sh [SECONDS [RATE...]]
#        (default 5 s per step; 100 200 400 800 1200 1600 2400 3200)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(100 200 400 800 1200 1600 2400 3200)
bin=$PWD/target/release/sipseal
[ -x "$bin" ] || cargo build --release
for tool in sipp kamailio; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install sip-tester kamailio)"; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

UAS=25090; PROXY=25070; UAC=25060
CT='application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m'

# One sealed call: alice's INVITE for bob and proxy-a (designated), bob's
# 200 under the session key. Every call of a run replays these bodies
# under its own Call-ID (the relay keys sessions by Call-ID).
(
    cd "$work"
    cp -r "$OLDPWD/keys" "$OLDPWD/samples" .
    "$bin" build invite --from sip:alice@a.example.com --to sip:bob@b.example.com \
        --call-id bench@a.example.com --sdp samples/offer-audio.sdp > invite.sip
    "$bin" seal invite.sip --peer keys/bob-ec/cert.pem --disclose keys/proxy-a-ec/cert.pem \
        --state alice 2>/dev/null > sealed.sip
    "$bin" open sealed.sip --identity keys/bob-ec --state bob > /dev/null 2>&1
    "$bin" reply --request sealed.sip --response 200 --sdp samples/answer.sdp \
        --identity keys/bob-ec --state bob 2>/dev/null > 200.sip
    python3 - <<'PY'
for src, dst in [("sealed.sip", "body.der"), ("200.sip", "reply.der")]:
    head, body = open(src, "rb").read().split(b"\r\n\r\n", 1)
    open(dst, "wb").write(body)
    if src == "sealed.sip":
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name in ("Proxy-Inspect-Body", "Content-ID"):
                open(name + ".txt", "w").write(value)
PY
    printf 'sip:alice@a.example.com: ["127.0.0.1"]\n' > bindings.yaml
)
pib=$(cat "$work/Proxy-Inspect-Body.txt")
cid=$(cat "$work/Content-ID.txt")

start_proxy() { # name
    case $1 in
    kamailio)
        sed -e "s/@LISTEN@/127.0.0.1:$PROXY/" -e "s/@CHILDREN@/2/" \
            -e "s|@NEXT@|sip:127.0.0.1:$UAS;transport=tcp|" \
            benches/kamailio-stateless.cfg > "$work/kamailio.cfg"
        kamailio -f "$work/kamailio.cfg" -DD -E -P "$work/kamailio.pid" \
            -Y "$work" > "$work/kamailio.log" 2>&1 &
        ;;
    blind)
        "$bin" relay --listen tcp:127.0.0.1:$PROXY --identity keys/proxy-b-ec \
            --next tcp:127.0.0.1:$UAS --state "$work/state-$1" --quiet > "$work/$1.log" 2>&1 &
        ;;
    designated)
        "$bin" relay --listen tcp:127.0.0.1:$PROXY --identity keys/proxy-a-ec \
            --next tcp:127.0.0.1:$UAS --state "$work/state-$1" \
            --bindings "$work/bindings.yaml" --quiet > "$work/$1.log" 2>&1 &
        ;;
    direct) return ;;
    esac
    proxy_pid=$!
    pids+=("$proxy_pid")
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$PROXY) 2>/dev/null && return
        sleep 0.05
    done
    echo "$1 did not listen"; cat "$work/$1.log"; exit 1
}

stop_proxy() {
    [ "$1" = direct ] && return
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    [ "$1" = kamailio ] && { pkill -f "$work/kamailio.cfg" 2>/dev/null || true; sleep 0.5; }
    sleep 0.3
}

# One step: RATE calls/s for SECONDS; prints "placed failed achieved".
step() { # proxy rate seconds [rtt]
    local proxy=$1 rate=$2 n=$(( $2 * $3 )) to=$PROXY
    [ "$proxy" = direct ] && to=$UAS
    rm -f "$work"/uac_* "$work"/uas_*
    (cd "$work" && exec sipp -sf "$OLDPWD/samples/sipp/uas-sealed.xml" -i 127.0.0.1 -p $UAS \
        -t t1 -m $n -nostdin -timeout $(( $3 + 30 ))s -key ctype "$CT" \
        -trace_stat -stf uas_stat.csv > /dev/null 2>&1) &
    local uas=$!
    sleep 0.3
    local t0; t0=$(date +%s.%N)
    (cd "$work" && sipp 127.0.0.1:$to -sf "$OLDPWD/samples/sipp/uac-sealed.xml" -i 127.0.0.1 \
        -p $UAC -t t1 -r "$rate" -m $n -nostdin -timeout $(( $3 + 30 ))s \
        -key target "sip:bob@127.0.0.1:$UAS;transport=tcp" -key pib "$pib" -key cid "$cid" \
        -key ctype "$CT" -trace_stat -stf uac_stat.csv ${4:+-trace_rtt -rtt_freq 1} \
        > /dev/null 2>&1) || true
    local t1; t1=$(date +%s.%N)
    kill $uas 2>/dev/null || true; wait $uas 2>/dev/null || true
    python3 - "$work/uac_stat.csv" "$n" "$t0" "$t1" <<'PY'
import csv, sys
path, n, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = list(csv.reader(open(path), delimiter=";"))
head, last = rows[0], rows[-1]
ok = int(last[head.index("SuccessfulCall(C)")])
failed = int(last[head.index("FailedCall(C)")])
# The last call starts at (n-1)/rate and lasts about 0.1 s (its pause).
print(ok, failed, round(ok / max(t1 - t0 - 0.15, 0.001)))
PY
}

declare -A best
for proxy in kamailio blind designated; do
    start_proxy $proxy
    best[$proxy]=0
    for rate in "${rates[@]}"; do
        read -r ok failed achieved < <(step $proxy "$rate" "$secs")
        printf '%-11s %5d cps asked: %6d calls, %4d failed, %5d cps achieved\n' \
            $proxy "$rate" "$ok" "$failed" "$achieved"
        if [ "$failed" -eq 0 ] && [ "$ok" -eq $(( rate * secs )) ] \
            && [ "$achieved" -ge $(( rate * 9 / 10 )) ]; then
            best[$proxy]=$rate
        else
            break
        fi
    done
    stop_proxy $proxy
done
echo
k=${best[kamailio]}
for proxy in kamailio blind designated; do
    r=${best[$proxy]}
    printf '%-11s highest rate at 0 failed calls: %5d cps' $proxy "$r"
    [ "$k" -gt 0 ] && printf '  (%.2f x Kamailio)' "$(echo "$r / $k" | bc -l)"
    echo
done

# Latency added by each proxy at half the lowest of the rates.
low=$k
for proxy in blind designated; do [ "${best[$proxy]}" -lt "$low" ] && low=${best[$proxy]}; done
half=$(( low / 2 )); [ "$half" -ge 10 ] || half=10
echo
echo "INVITE -> 200 response time at $half cps (SIPp rtd), and what the proxy adds:"
declare -A p50 p99
for proxy in direct kamailio blind designated; do
    start_proxy $proxy
    step $proxy "$half" "$secs" rtt > /dev/null
    stop_proxy $proxy
    read -r a b < <(python3 - "$work" <<'PY'
import glob, sys
vals = []
for f in glob.glob(sys.argv[1] + "/uac-sealed_*_rtt.csv"):
    for line in open(f).read().splitlines()[1:]:
        parts = line.split(";")
        if len(parts) >= 2:
            vals.append(float(parts[1]))
vals.sort()
q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))]
print(f"{q(0.5):.3f} {q(0.99):.3f}")
PY
)
    rm -f "$work"/uac-sealed_*_rtt.csv
    p50[$proxy]=$a; p99[$proxy]=$b
    if [ $proxy = direct ]; then
        printf '%-11s p50 %7.3f ms  p99 %7.3f ms\n' $proxy "$a" "$b"
    else
        printf '%-11s p50 %7.3f ms  p99 %7.3f ms   added: p50 %+.3f ms, p99 %+.3f ms\n' \
            $proxy "$a" "$b" "$(echo "$a - ${p50[direct]}" | bc -l)" "$(echo "$b - ${p99[direct]}" | bc -l)"
    fi
done
