#!/usr/bin/env bash
# Live throughput on the loopback, one proxy between SIPp UAC and SIPp UAS
# over TCP (TRANSPORT=tcp, the default) or UDP (TRANSPORT=udp: the sealed
# INVITE of P-256 recipients fits a datagram), the same sealed-INVITE dialog
# (samples/sipp: INVITE, 180, 200, ACK, BYE, 200) and the same call-rate
# steps for each proxy:
#
#   kamailio    Kamailio 5.6 as a stateless forwarder (kamailio-stateless.cfg)
#   blind       sipseal relay, not a recipient: forwards the sealed body untouched
#   designated  sipseal relay, designated: opens each INVITE (P-256) and the
#               200 under the session key it recorded
#
# For each step: calls placed, failed, the rate achieved, and the CPU time
# the proxy used per call (user + system, all its processes). A proxy's
# rate is the highest rate achieved in a step where every call was placed
# and none failed; the steps stop at the first failure, or once the proxy
# falls under 90% of the rate asked. Then the latency each proxy adds (SIPp's INVITE->200 response
# time through the proxy minus direct, p50 and p99) at half the lowest
# of those rates.
#
# Usage: bash benches/live-vs-kamailio.sh [SECONDS [RATE...]]
#        (default 5 s per step; 400 800 1600 2400 3200 4800 6400 8000)
#        PROXIES="blind designated" to run only some; LATENCY=0 to skip
#        the latency part; TRANSPORT=udp; CHILDREN=N Kamailio's worker
#        processes per transport (2; over UDP several reorder a call's
#        messages, which SIPp counts as failures: CHILDREN=1 then);
#        ORDER=sequential runs each proxy through all its steps before
#        the next (the default interleaves them, step by step; PERF=
#        runs sequentially).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(400 800 1600 2400 3200 4800 6400 8000)
read -r -a proxies <<< "${PROXIES:-kamailio blind designated}"
bin=${SIPSEAL:-$PWD/target/release/sipseal}
[ -x "$bin" ] || cargo build --release
for tool in sipp kamailio; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install sip-tester kamailio)"; exit 2; }
done
work=$(mktemp -d)
pids=()
pids_dirs=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work" $pids_dirs
}
trap cleanup EXIT

UAS=25090; PROXY=25070; UAC=25060
T=${TRANSPORT:-tcp}
case $T in tcp) SIPP_T=t1 ;; udp) SIPP_T=u1 ;; *) echo "TRANSPORT=tcp|udp"; exit 2 ;; esac
# SIPp's socket buffers: its default (64 KiB) holds about 50 sealed
# INVITEs, and over UDP on 2 busy cores a SIPp that waits a few ms for a
# core overflows it (the kernel's UdpRcvbufErrors), whichever proxy is
# in the path; every proxy here gets the same 4 MiB (net.core.rmem_max).
BUFF=4194304
CT='application/pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m'

# One sealed call: alice's INVITE for bob and proxy-a (designated), bob's
# 200 under the session key. Every call of a run replays these bodies
# under its own Call-ID (the relay keys sessions by Call-ID).
source benches/sealed-call.sh
sealed_call "$work" "$bin"
# Where the designated relay keeps its session keys: STATE=shm (/dev/shm:
# tmpfs, the default, as the relay's own default $XDG_RUNTIME_DIR and
# /run are), STATE=disk (a directory under $TMPDIR: on this machine's
# ext4 without a journal, each new file's inode search skips recently
# deleted ones, and its cost follows what earlier runs removed),
# STATE=redis (a redis-server started here); FSYNC=1
# runs it with --fsync (a disk flush per new call).
case ${STATE:-shm} in
disk) state=$work/state ;;
shm) state=$(mktemp -d /dev/shm/sipseal-bench.XXXXXX); pids_dirs=$state ;;
redis)
    redis-server --port 25379 --bind 127.0.0.1 --save '' --appendonly no > /dev/null 2>&1 &
    pids+=("$!")
    sleep 0.3
    state=redis://127.0.0.1:25379
    ;;
esac
pib=$(cat "$work/Proxy-Inspect-Body.txt")
cid=$(cat "$work/Content-ID.txt")

start_proxy() { # name
    case $1 in
    kamailio)
        sed -e "s/@LISTEN@/127.0.0.1:$PROXY/" -e "s/@CHILDREN@/${CHILDREN:-2}/" \
            -e "s|@NEXT@|sip:127.0.0.1:$UAS;transport=$T|" \
            benches/kamailio-stateless.cfg > "$work/kamailio.cfg"
        kamailio -f "$work/kamailio.cfg" -DD -E -P "$work/kamailio.pid" \
            -Y "$work" > "$work/kamailio.log" 2>&1 &
        ;;
    blind)
        "$bin" relay --listen $T:127.0.0.1:$PROXY --identity keys/proxy-b-ec \
            --next $T:127.0.0.1:$UAS --state "$work/state-$1" --quiet > "$work/$1.log" 2>&1 &
        ;;
    designated)
        "$bin" relay --listen $T:127.0.0.1:$PROXY --identity keys/proxy-a-ec \
            --next $T:127.0.0.1:$UAS --state "$state" \
            --bindings "$work/bindings.yaml" ${FSYNC:+--fsync} --quiet > "$work/$1.log" 2>&1 &
        ;;
    direct) return ;;
    esac
    proxy_pid=$!
    pids+=("$proxy_pid")
    for _ in $(seq 100); do
        if [ $T = tcp ]; then
            (exec 3<>/dev/tcp/127.0.0.1/$PROXY) 2>/dev/null && return
        else
            ss -lunH | grep -q "127.0.0.1:$PROXY " && return
        fi
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

# The CPU time (ticks, user + system) the proxy's processes have used.
proxy_cpu() { # proxy
    local pids
    case $1 in
    kamailio) pids=$(pgrep -f "$work/kamailio.cfg" || true) ;;
    direct) echo 0; return ;;
    *) pids=$proxy_pid ;;
    esac
    local total=0 p
    for p in $pids; do
        [ -r /proc/$p/stat ] || continue
        # Fields 14 and 15 after the command (which may hold spaces).
        total=$(( total + $(sed 's/^.*) //' /proc/$p/stat | awk '{print $12 + $13}') ))
    done
    echo $total
}
TICK=$(getconf CLK_TCK)

# One step: RATE calls/s for SECONDS; prints "placed failed achieved
# cpu", cpu being the proxy's CPU time per call placed (µs).
step() { # proxy rate seconds [rtt]
    local proxy=$1 rate=$2 n=$(( $2 * $3 )) to=$PROXY
    [ "$proxy" = direct ] && to=$UAS
    rm -f "$work"/uac_* "$work"/uas_*
    (cd "$work" && exec sipp -sf "$OLDPWD/samples/sipp/uas-sealed.xml" -i 127.0.0.1 -p $UAS \
        -t $SIPP_T -buff_size $BUFF -m $n -nostdin -timeout $(( $3 + 30 ))s -key ctype "$CT" \
        -trace_stat -stf uas_stat.csv > /dev/null 2>&1) &
    local uas=$!
    sleep 0.3
    local c0; c0=$(proxy_cpu "$proxy")
    local t0; t0=$(date +%s.%N)
    # SIPp's -timeout does not always end it (a call whose answer was
    # lost keeps it waiting): a SIGINT after as long, then a kill.
    (cd "$work" && timeout -s INT -k 5 $(( $3 + 40 )) \
        sipp 127.0.0.1:$to -sf "$OLDPWD/samples/sipp/uac-sealed.xml" -i 127.0.0.1 \
        -p $UAC -t $SIPP_T -buff_size $BUFF -r "$rate" -m $n -nostdin -timeout $(( $3 + 30 ))s \
        -key target "sip:bob@127.0.0.1:$UAS;transport=$T" -key pib "$pib" -key cid "$cid" \
        -key ctype "$CT" -trace_stat -fd 1 -stf uac_stat.csv ${4:+-trace_rtt -rtt_freq 1} \
        > /dev/null 2>&1) || true
    local t1; t1=$(date +%s.%N)
    local c1; c1=$(proxy_cpu "$proxy")
    kill $uas 2>/dev/null || true; wait $uas 2>/dev/null || true
    python3 - "$work/uac_stat.csv" "$n" "$t0" "$t1" "$(( c1 - c0 ))" "$TICK" <<'PY'
import csv, sys
path, n, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ticks, tick = int(sys.argv[5]), int(sys.argv[6])
try:
    rows = list(csv.reader(open(path), delimiter=";"))
    head, last = rows[0], rows[-1]
    ok = int(last[head.index("SuccessfulCall(C)")])
    failed = int(last[head.index("FailedCall(C)")])
except (OSError, IndexError, ValueError):
    # No statistics (SIPp stopped by its -timeout before it wrote any):
    # a step that carried nothing.
    ok, failed = 0, n
# The last call starts at (n-1)/rate and lasts about 0.1 s (its pause).
print(ok, failed, round(ok / max(t1 - t0 - 0.15, 0.001)), round(ticks * 1e6 / tick / max(ok, 1)))
PY
}

declare -A best=([kamailio]=0 [blind]=0 [designated]=0)
declare -A ended=()
# One step's line, and whether the proxy goes on to the next rate:
# carried (every call placed, none failed) and not saturated (it kept
# within 90% of the rate asked; higher steps would say nothing more).
judge() { # proxy rate ok failed achieved cpu
    printf '%-11s %5d cps asked: %6d calls, %4d failed, %5d cps achieved, %4d us CPU a call\n' \
        "$1" "$2" "$3" "$4" "$5" "$6"
    if [ "$4" -eq 0 ] && [ "$3" -eq $(( $2 * secs )) ]; then
        [ "$5" -gt "${best[$1]}" ] && best[$1]=$5
        [ "$5" -ge $(( $2 * 9 / 10 )) ] || ended[$1]=1
    else
        ended[$1]=1
    fi
}
if [ -n "${PERF:-}" ] || [ "${ORDER:-interleaved}" = sequential ]; then
    # Each proxy through every step in turn (one process per proxy, so
    # that perf follows it).
    for proxy in "${proxies[@]}"; do
        start_proxy $proxy
        if [ -n "${PERF:-}" ] && [ $proxy != kamailio ]; then
            perf record -F 499 ${PERF_CALLGRAPH:--g} -p "$proxy_pid" -o "$work/perf-$proxy.data" > /dev/null 2>&1 &
            perf_pid=$!
        fi
        for rate in "${rates[@]}"; do
            read -r ok failed achieved cpu < <(step $proxy "$rate" "$secs")
            judge $proxy "$rate" "$ok" "$failed" "$achieved" "$cpu"
            [ -n "${ended[$proxy]:-}" ] && break
        done
        if [ -n "${PERF:-}" ] && [ $proxy != kamailio ]; then
            kill -INT $perf_pid; wait $perf_pid 2>/dev/null || true
            cp "$work/perf-$proxy.data" "$PERF-$proxy.data"; perf report -i "$work/perf-$proxy.data" --no-children --percent-limit 1.5 --stdio \
                2>/dev/null | grep -v '^$' | head -80 > "$PERF-$proxy.txt"
        fi
        stop_proxy $proxy
    done
else
    # Interleaved (the default): at each rate every proxy still going
    # takes its step, one after the other, each on a fresh start. This
    # machine's speed drifts by a third within minutes; run one proxy's
    # steps after another's and the ratio measures the drift as much as
    # the proxies.
    for rate in "${rates[@]}"; do
        going=0
        for proxy in "${proxies[@]}"; do
            [ -n "${ended[$proxy]:-}" ] && continue
            going=1
            start_proxy $proxy
            read -r ok failed achieved cpu < <(step $proxy "$rate" "$secs")
            stop_proxy $proxy
            judge $proxy "$rate" "$ok" "$failed" "$achieved" "$cpu"
        done
        [ $going = 1 ] || break
    done
fi
echo
k=${best[kamailio]}
for proxy in "${proxies[@]}"; do
    r=${best[$proxy]}
    printf '%-11s highest rate carried with 0 failed calls: %5d cps' $proxy "$r"
    [ "$k" -gt 0 ] && printf '  (%.2f x Kamailio)' "$(echo "$r / $k" | bc -l)"
    echo
done

# Latency added by each proxy at half the lowest of the rates: every
# message's time from entering the proxy to leaving it, from a loopback
# capture (tshark, microsecond timestamps), matched by Call-ID, CSeq and
# status.
[ "${LATENCY:-1}" = 0 ] && exit 0
low=1000000
for proxy in "${proxies[@]}"; do [ "${best[$proxy]}" -lt "$low" ] && low=${best[$proxy]}; done
half=$(( low / 2 )); [ "$half" -ge 10 ] || half=10
echo
echo "Latency each proxy adds per message at $half cps (capture on the loopback):"
for proxy in "${proxies[@]}"; do
    start_proxy $proxy
    tshark -i lo -f "$T port $PROXY or $T port $UAS" -w "$work/$proxy.pcap" -q > "$work/tshark.log" 2>&1 &
    cap=$!
    for _ in $(seq 100); do grep -q "Capturing on" "$work/tshark.log" && break; sleep 0.1; done
    step $proxy "$half" "$secs" > /dev/null
    sleep 0.5
    kill -INT $cap; wait $cap 2>/dev/null || true
    stop_proxy $proxy
    tshark -r "$work/$proxy.pcap" -d $T.port==$PROXY,sip -d $T.port==$UAS,sip -d $T.port==$UAC,sip \
        -Y sip -T fields -E occurrence=a -E aggregator='|' -e frame.time_epoch -e $T.srcport \
        -e $T.dstport -e sip.Call-ID -e sip.CSeq -e sip.Status-Code > "$work/$proxy.fields" 2>/dev/null
    python3 - "$work/$proxy.fields" "$PROXY" "$UAS" $proxy <<'PY'
import sys
path, proxy_port, uas_port, name = sys.argv[1:5]
seen = {}
deltas = []
for line in open(path):
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 5:
        continue
    t, src, dst = float(cols[0]), cols[1], cols[2]
    calls, cseqs = cols[3].split("|"), cols[4].split("|")
    codes = (cols[5].split("|") if len(cols) > 5 else [])
    codes += [""] * (len(calls) - len(codes))
    for call, cseq, code in zip(calls, cseqs, codes):
        # A request has no status; responses are told apart by theirs.
        key = (call, cseq, code)
        # Into the proxy: from the UAC to its port, or from the UAS.
        if dst == proxy_port or src == uas_port:
            seen.setdefault(key, t)
        # Out of it: to the UAS, or from its port to the UAC.
        elif (dst == uas_port or src == proxy_port) and key in seen:
            deltas.append((t - seen.pop(key)) * 1e6)
deltas.sort()
q = lambda p: deltas[min(len(deltas) - 1, int(p * len(deltas)))]
print(f"{name:<11} {len(deltas):6d} messages  p50 {q(0.5):7.0f} us  p99 {q(0.99):7.0f} us")
PY
done
