#!/usr/bin/env bash
# What `sipseal edge` adds to a call, under load (issue 30): SIPp as two
# ordinary phones (plain SDP) calling through edge A -> relay -> edge B
# (the relay on mutual TLS, finding bob by location; each INVITE sealed
# for bob and the relay (designated) and signed inside by alice, bob's
# 200 sealed under the session key and signed by bob), against the same
# phones on the same relay without edges (plain SDP, carol's binding).
# RATE calls/s for SECONDS each (default 100 and 10): INVITE, 180, 200,
# ACK, 100 ms, BYE, 200.
#
# Prints, for each path: calls placed and failed, SIPp's INVITE->200 time
# (p50, p99, max); the edges' added delay (p50, p99 of the edge path minus
# the direct one's); each edge's CPU time per call (user + system) and
# the relay's.
#
#   bash benches/edge-load.sh [SECONDS [RATE]]     (or RATE=N in the
#   environment; SECONDS itself is a bash variable, hence an argument)
#   SIPSEAL=target/debug/sipseal for a smoke run; DISCLOSE=0: the edge
#   discloses to no relay (the relay forwards ciphertext).
#
# alice and bob get their certificates by a PUBLISH with a CSR (Digest
# auth-int, `sipseal send`), as in tests/edge_flagship.rs: the registrar
# wants a REGISTER's body under auth-int, which a phone's credentials do
# not cover, so an edge cannot enrol at the phone's REGISTER (SPEC §7.2).
# bob's SIPp registers through edge B with samples/sipp/register-phone.xml
# (REGISTER sip:DOMAIN, MD5): register.xml's Request-URI is the next
# hop's own address, which through an outbound proxy names the edge.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rate=${2:-${RATE:-100}}
bin=${SIPSEAL:-$PWD/target/release/sipseal}
[ -x "$bin" ] || cargo build --release
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 2; }
repo=$PWD
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"
cp -r "$repo/keys" .
DOMAIN=b.example.com
REG=25160 RELAY_UDP=25170 RELAY_TLS=25171 EDGE_A=25180 EDGE_B=25182
UAS=25190 UAC=25192 UAS_DIRECT=25194

# The realm: a CA, the registrar's identity, users with MD5 HA1s (SIPp
# computes MD5 only); alice's and bob's RSA identities, their
# certificates published to the registrar below (certificate queries
# find them); carol the phone of the direct path.
"$bin" keys ca --name "CN=Example CA" --out ca > /dev/null
"$bin" keys generate --uri sip:registrar.$DOMAIN --ca ca --out reg > /dev/null
for u in alice bob carol; do
    echo "$u-pw" > $u.pw
    chmod 600 $u.pw
    "$bin" registrar passwd --users users.yaml --realm $DOMAIN --user sip:$u@$DOMAIN \
        --password-file $u.pw --allow-md5 > /dev/null
done
for u in alice bob; do
    "$bin" keys generate --uri sip:$u@$DOMAIN --out $u > /dev/null
done

wait_port() { # proto port
    for _ in $(seq 200); do
        case $1 in
        udp) ss -lunH | grep -q "127.0.0.1:$2 " && return ;;
        tcp) ss -ltnH | grep -q "127.0.0.1:$2 " && return ;;
        esac
        sleep 0.05
    done
    echo "nothing listens on $1 $2"; tail -n 20 ./*.log; exit 1
}
start() { # name args...
    local name=$1; shift
    "$bin" "$@" > "$name.log" 2>&1 &
    pids+=("$!")
    eval "pid_${name//-/_}=$!"
}

start registrar registrar --listen udp:127.0.0.1:$REG --listen tcp:127.0.0.1:$REG \
    --realm $DOMAIN --ca ca --identity reg --users users.yaml --state registry \
    --digest-algorithms md5 --max-expires 86400
wait_port tcp $REG
# A certificate for a day (longer than a registration: the edges add no
# CSR to the phones' REGISTERs).
for u in alice bob; do
    "$bin" register --uri sip:$u@$DOMAIN --publish --identity $u --expires 86400 > $u-pub.sip
    "$bin" send --next tcp:127.0.0.1:$REG --password-file $u.pw $u-pub.sip 2> /dev/null |
        sed -n '/^SIP\/2.0 200/,$p' > $u-pub-200.sip
    "$bin" register --accept $u-pub-200.sip --identity $u --trust ca/cert.pem > /dev/null ||
        { echo "$u's PUBLISH failed"; tail -n 20 registrar.log; exit 1; }
done
echo "127.0.0.1:$REG $DOMAIN" > relay-hosts
start relay relay --listen tls:127.0.0.1:$RELAY_TLS --listen udp:127.0.0.1:$RELAY_UDP \
    --identity keys/proxy-b-ec --trust keys/trust.pem --trust ca/cert.pem \
    --domain $DOMAIN --registrations registry --hosts relay-hosts --record-route --quiet \
    --hop-allow 127.0.0.0/8
wait_port tcp $RELAY_TLS
echo "127.0.0.1:$RELAY_TLS proxy-b.$DOMAIN" > edge-hosts
disclose="[relay]"
[ "${DISCLOSE:-1}" = 0 ] && disclose="[]"
cat > policy.yaml <<YAML
relays:
  relay: keys/proxy-b-ec/cert.pem
destinations:
  - to: "sip:*@$DOMAIN"
    disclose: $disclose
    access: read
    unsealable: refuse
incoming:
  unsealed: refuse
  unsigned: refuse
YAML
edge() { # name port identity extra...
    local name=$1 port=$2 id=$3; shift 3
    start "$name" edge --listen udp:127.0.0.1:"$port" --identity "$id" \
        --outbound tls:proxy-b.$DOMAIN:$RELAY_TLS --hosts edge-hosts \
        --trust keys/trust.pem --trust ca/cert.pem --disclosure policy.yaml \
        --cert-query tcp:127.0.0.1:$REG --state "state-$name" "$@"
    wait_port udp "$port"
}
edge edge-a $EDGE_A alice
edge edge-b $EDGE_B bob

register() { # user proxy-port contact-port
    sipp 127.0.0.1:"$2" -sf "$repo/samples/sipp/register-phone.xml" -i 127.0.0.1 -p "$3" \
        -m 1 -s "$1" -au "$1" -ap "$1-pw" -auth_uri $DOMAIN -key domain $DOMAIN -key contact 127.0.0.1:"$3" \
        -nostdin -timeout 20s > "register-$1.log" 2>&1 ||
        { echo "$1 did not register"; tail -n 20 ./*.log; exit 1; }
}
register bob $EDGE_B $UAS
register carol $RELAY_UDP $UAS_DIRECT
# alice's plain calls on the direct path come from her SIPp's address:
# the relay's imposture check wants a binding of hers there.
register alice $RELAY_UDP $UAC

# Ticks (user + system) a process has used.
cpu() { sed 's/^.*) //' /proc/"$1"/stat | awk '{print $12 + $13}'; }
TICK=$(getconf CLK_TCK)
n=$(( rate * secs ))

# One run: alice's SIPp to PROXY-PORT calling TO, bob's (or carol's)
# SIPp answering on UAS-PORT; leaves rtt-NAME.csv and stat-NAME.csv.
run() { # name proxy-port to uas-port
    local name=$1
    rm -f ./*_rtt.csv "stat-$name.csv"
    sipp -sf "$repo/samples/sipp/uas-phone.xml" -i 127.0.0.1 -p "$4" -s x -m $n -nostdin \
        -timeout $(( secs + 30 ))s > "uas-$name.log" 2>&1 &
    local uas=$!
    sleep 0.3
    local a0 b0 r0
    a0=$(cpu "$pid_edge_a"); b0=$(cpu "$pid_edge_b"); r0=$(cpu "$pid_relay")
    timeout -s INT -k 5 $(( secs + 40 )) sipp 127.0.0.1:"$2" -sf "$repo/samples/sipp/uac-phone.xml" \
        -i 127.0.0.1 -p $UAC -s alice -r "$rate" -m $n -nostdin -timeout $(( secs + 30 ))s \
        -key from sip:alice@$DOMAIN -key to "$3" -trace_rtt -rtt_freq 1 -trace_stat -stf "stat-$name.csv" \
        > "uac-$name.log" 2>&1 || true
    echo "$name $(( $(cpu "$pid_edge_a") - a0 )) $(( $(cpu "$pid_edge_b") - b0 )) $(( $(cpu "$pid_relay") - r0 ))" >> cpu.txt
    kill $uas 2>/dev/null || true; wait $uas 2>/dev/null || true
    mv ./uac-phone_*_rtt.csv "rtt-$name.csv" 2>/dev/null || true
}
run direct $RELAY_UDP sip:carol@$DOMAIN $UAS_DIRECT
run edges $EDGE_A sip:bob@$DOMAIN $UAS

python3 - "$n" "$TICK" "$rate" "$secs" <<'PY'
import csv, glob, sys
n, tick, rate, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def times(name):
    try:
        rows = list(csv.reader(open(f"rtt-{name}.csv"), delimiter=";"))
    except OSError:
        return []
    return sorted(float(r[1]) for r in rows[1:] if len(r) > 1 and r[1])
def stats(name):
    try:
        rows = list(csv.reader(open(f"stat-{name}.csv"), delimiter=";"))
        head, last = rows[0], rows[-1]
        return int(last[head.index("SuccessfulCall(C)")]), int(last[head.index("FailedCall(C)")])
    except (OSError, IndexError, ValueError):
        return 0, n
def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")
cpu = {l.split()[0]: [int(x) for x in l.split()[1:]] for l in open("cpu.txt")}
print(f"{rate} calls/s for {secs} s ({n} calls a path); INVITE->200 as alice's SIPp sees it")
res = {}
for name in ("direct", "edges"):
    ok, failed = stats(name)
    t = times(name)
    res[name] = t
    print(f"{name:7s} {ok:6d} calls, {failed:4d} failed; INVITE->200 p50 {pct(t,50):7.2f} ms, p99 {pct(t,99):7.2f} ms, max {t[-1] if t else float('nan'):7.2f} ms ({len(t)} timed)")
d, e = res["direct"], res["edges"]
print(f"added by the edges: p50 {pct(e,50) - pct(d,50):+.2f} ms, p99 {pct(e,99) - pct(d,99):+.2f} ms")
ok = max(stats("edges")[0], 1)
a, b, r = cpu["edges"]
us = lambda t: t * 1e6 / tick / ok
print(f"CPU a call (edge path): edge A {us(a):.0f} us, edge B {us(b):.0f} us, relay {us(r):.0f} us")
okd = max(stats("direct")[0], 1)
print(f"CPU a call (direct path): relay {cpu['direct'][2] * 1e6 / tick / okd:.0f} us")
PY
