#!/usr/bin/env bash
# Redis restarted under load (issue 25, H6; not CI): two designated relays
# (proxy-a-ec) share one redis-server as their store, each with a SIPp UAC
# placing sealed calls through it (RATE calls/s each, for SECONDS) to one
# SIPp UAS. DOWN seconds in, redis-server is shut down; UP seconds in it
# starts again on the same port (empty). From the relays' logs, per
# second: INVITEs forwarded and answered 503 (with Retry-After), and any
# other failure; then whether failures fell only while Redis was down, and
# how long after its return each relay forwarded its first INVITE again.
#
# Usage: bash benches/redis-restart.sh [SECONDS [RATE [DOWN [UP]]]]
#        (default 20 s, 50 calls/s per relay, down at 6 s, up at 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rate=${2:-50}
down=${3:-6}
up=${4:-10}
bin=${SIPSEAL:-$PWD/target/release/sipseal}
[ -x "$bin" ] || cargo build --release
for tool in sipp redis-server; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install sip-tester redis-server)"; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

UAS=25490; A=25470; B=25471; UAC_A=25460; UAC_B=25461; REDIS=25479
CT='application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m'
source benches/sealed-call.sh
sealed_call "$work" "$bin"
pib=$(cat "$work/Proxy-Inspect-Body.txt")
cid=$(cat "$work/Content-ID.txt")

start_redis() {
    redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no > /dev/null 2>&1 &
    redis=$!
    pids+=("$redis")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$REDIS) 2>/dev/null && return; sleep 0.02; done
}
start_redis
for port in $A $B; do
    "$bin" relay --listen tcp:127.0.0.1:$port --identity keys/proxy-a-ec \
        --next tcp:127.0.0.1:$UAS --state redis://127.0.0.1:$REDIS \
        --bindings "$work/bindings.yaml" > "$work/relay-$port.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done
n=$(( rate * secs ))
(cd "$work" && exec sipp -sf "$OLDPWD/samples/sipp/uas-sealed.xml" -i 127.0.0.1 -p $UAS \
    -t t1 -m $(( 2 * n )) -nostdin -timeout $(( secs + 30 ))s -key ctype "$CT" > /dev/null 2>&1) &
uas=$!
pids+=("$uas")
sleep 0.3
t0=$(date +%s.%N)
for pair in "$A $UAC_A" "$B $UAC_B"; do
    read -r relay uac <<< "$pair"
    (cd "$work" && timeout -s INT -k 5 $(( secs + 40 )) \
        sipp 127.0.0.1:$relay -sf "$OLDPWD/samples/sipp/uac-sealed.xml" -i 127.0.0.1 \
        -p $uac -t t1 -r "$rate" -m $n -nostdin -timeout $(( secs + 30 ))s \
        -key target "sip:bob@127.0.0.1:$UAS;transport=tcp" -key pib "$pib" -key cid "$cid" \
        -key ctype "$CT" -trace_stat -stf "uac_$relay.csv" > /dev/null 2>&1) &
    pids+=("$!")
done
sleep "$down"
t_down=$(date +%s.%N)
kill "$redis"; wait "$redis" 2>/dev/null || true
sleep $(( up - down ))
start_redis
t_up=$(date +%s.%N)
sleep $(( secs - up + 5 ))
python3 - "$work" "$t0" "$t_down" "$t_up" $A $B <<'PY'
import csv, json, sys, datetime
work, t0, t_down, t_up = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"Redis down at {t_down - t0:.1f} s, up again at {t_up - t0:.1f} s")
bad_outside = 0
for port in sys.argv[5:]:
    seconds = {}
    first_after = None
    for line in open(f"{work}/relay-{port}.log"):
        try:
            l = json.loads(line)
        except ValueError:
            continue
        if l.get("method") != "INVITE" or l.get("status") is not None:
            continue
        t = datetime.datetime.fromisoformat(l["timestamp"].replace("Z", "+00:00")).timestamp()
        d = l.get("decision", "")
        kind = "forward" if d.startswith("forward") else "503" if d.startswith("answer 503") else "other"
        sec = int(t - t0)
        seconds.setdefault(sec, {"forward": 0, "503": 0, "other": 0})[kind] += 1
        if kind != "forward" and not (t_down <= t <= t_up + 2):
            bad_outside += 1
        if kind == "forward" and t > t_up and first_after is None:
            first_after = t - t_up
    print(f"relay :{port}, per second (forwarded / 503 / other):")
    print("   " + "  ".join(f"{s}s:{c['forward']}/{c['503']}/{c['other']}" for s, c in sorted(seconds.items())))
    print(f"   first INVITE forwarded after Redis came back: {first_after:.2f} s" if first_after is not None else "   no INVITE forwarded after Redis came back")
    try:
        rows = list(csv.reader(open(f"{work}/uac_{port}.csv"), delimiter=";"))
        head, last = rows[0], rows[-1]
        print(f"   SIPp: {last[head.index('SuccessfulCall(C)')]} calls succeeded, {last[head.index('FailedCall(C)')]} failed")
    except (OSError, IndexError, ValueError):
        print("   SIPp wrote no statistics")
print(f"INVITEs not forwarded outside the outage (and its 2 s): {bad_outside}")
PY
