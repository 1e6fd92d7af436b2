#!/usr/bin/env bash
# Issue 25's hostile load (not CI): every attack of the issue, for a
# bounded time, against a release relay (UDP+TCP, designated identity,
# bindings, pinholes, report) and a registrar (UDP+TCP), both on
# 127.0.0.1. Prints:
#
#   1. the largest response/request size ratio over UDP, per probe (<= 3);
#   2. the delay of a normal request while 100 requests to a black hole
#      (a next hop whose accept queue is full) are pending (<= 50 ms);
#   3. whether a new client connects and is served while 1,000 connections
#      trickle a byte now and then (yes);
#   4. resident memory (VmRSS) and disk growth (state directories, report
#      and pinhole files) after FLOOD_SECS of each flood;
#   5. pinholes and sessions created by unauthenticated senders (0).
#
# Usage: bash benches/hostile-live.sh [FLOOD_SECS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
bin=$PWD/target/release/sipseal
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

RP=25270 # relay
GP=25280 # registrar
# The registrar's realm: a CA, its identity, alice with a password.
"$bin" keys ca --name "CN=Hostile CA" --out "$work/ca" > /dev/null
"$bin" keys generate --uri sip:registrar.example.com --ca "$work/ca" --out "$work/reg" > /dev/null
printf 'alice-pw\n' > "$work/alice.pw"
chmod 600 "$work/alice.pw"
"$bin" registrar passwd --users "$work/users.yaml" --realm example.com \
    --user sip:alice@example.com --password-file "$work/alice.pw" > /dev/null
# The relay knows alice at an address nobody here sends from.
printf 'sip:alice@a.example.com: ["192.0.2.10"]\n' > "$work/bindings.yaml"

"$bin" relay --listen udp:127.0.0.1:$RP --listen tcp:127.0.0.1:$RP \
    --identity keys/proxy-a-ec --state "$work/relay-state" \
    --bindings "$work/bindings.yaml" --pinholes "$work/pinholes.nft" \
    --report "$work/report.jsonl" --hop-allow 127.0.0.0/8 --quiet \
    > "$work/relay.log" 2>&1 &
relay=$!
pids+=("$relay")
"$bin" registrar --listen udp:127.0.0.1:$GP --listen tcp:127.0.0.1:$GP \
    --realm example.com --ca "$work/ca" --identity "$work/reg" \
    --users "$work/users.yaml" --state "$work/reg-state" \
    > "$work/registrar.log" 2>&1 &
registrar=$!
pids+=("$registrar")
for port in $RP $GP; do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.05
    done
done

# alice registers a certificate (over TCP), for the certificate queries.
"$bin" keys generate --type p256 --uri sip:alice@example.com --csr --out "$work/alice" > /dev/null
"$bin" register --uri sip:alice@example.com --contact sip:alice@127.0.0.1:5999 \
    --identity "$work/alice" > "$work/register.sip"
"$bin" send "$work/register.sip" --next tcp:127.0.0.1:$GP \
    --password-file "$work/alice.pw" > /dev/null
# A sealed INVITE with SDP, designated to the relay, from nobody: the
# floods make ACKs and INVITEs of it.
"$bin" build invite --from sip:nobody@evil.example --to sip:bob@b.example.com \
    --sdp samples/offer-audio.sdp --seal --peer keys/bob-ec/cert.pem \
    --disclose keys/proxy-a-ec/cert.pem -o "$work/sealed.sip" 2> /dev/null

python3 - "$work" "$RP" "$GP" "$relay" "$registrar" "$secs" <<'PY'
import os, re, resource, socket, sys, time
work, rp, gp, relay_pid, reg_pid, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
RELAY, REG = ("127.0.0.1", rp), ("127.0.0.1", gp)

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    return s

def req(method, uri, call_id, port, extra="", body=b"", ctype="text/plain", frm="<sip:mallory@evil.example>;tag=m1"):
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {frm}\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\n{extra}")
    if body:
        head += f"Content-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
    return 0

def du(*paths):
    total = 0
    for p in paths:
        if os.path.isfile(p):
            total += os.path.getsize(p)
        for root, _, files in os.walk(p):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
    return total

def mib(n):
    return f"{n / 1048576:.1f} MiB"

sealed = open(f"{work}/sealed.sip", "rb").read()
head, body = sealed.split(b"\r\n\r\n", 1)
head = head.decode()

def sealed_as(method, call_id, port):
    h = re.sub(r"^INVITE ", f"{method} ", head)
    h = re.sub(r"CSeq: (\d+) INVITE", rf"CSeq: \1 {method}", h)
    h = re.sub(r"Call-ID: .*", f"Call-ID: {call_id}", h)
    h = re.sub(r"Via: SIP/2.0/UDP [^;]*", f"Via: SIP/2.0/UDP 127.0.0.1:{port}", h)
    return h.encode() + b"\r\n\r\n" + body

# 1. Response/request ratios over UDP.
print("1. largest response/request ratio over UDP (the limit is 3):")
s = udp()
p = s.getsockname()[1]
probes = [
    ("relay: OPTIONS ping", RELAY, req("OPTIONS", f"sip:127.0.0.1:{rp}", "r1", p)),
    ("relay: 256 Route-Security entries", RELAY, req("OPTIONS", "sip:bob@b.example.com", "r2", p, "Route-Security: <sip:192.0.2.1>;level=0\r\n" * 256)),
    ("relay: sealed INVITE from nobody (imposture)", RELAY, sealed_as("INVITE", "r3", p)),
    ("relay: request for its own Redis/listener", RELAY, req("MESSAGE", "sip:bob@b.example.com", "r4", p, f"Route: <sip:[::ffff:127.0.0.1]:{rp};transport=tcp;lr>\r\n")),
    ("registrar: certificate query", REG, req("OPTIONS", "sip:alice@example.com", "g1", p, "Accept: application/pkix-cert\r\n").replace(b"To: <sip:bob@b.example.com>", b"To: <sip:alice@example.com>")),
    ("registrar: smallest REGISTER (401)", REG, (f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKs\r\n"
        f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: s\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@127.0.0.1:{p}>\r\nContent-Length: 0\r\n\r\n").encode()),
    ("registrar: keep-alive OPTIONS", REG, req("OPTIONS", "sip:example.com", "g2", p)),
]
worst = 0.0
for name, to, msg in probes:
    s.sendto(msg, to)
    s.settimeout(1.0)
    largest = 0
    try:
        while True:
            largest = max(largest, len(s.recv(65535)))
            s.settimeout(0.2)
    except socket.timeout:
        pass
    ratio = largest / len(msg)
    worst = max(worst, ratio)
    print(f"   {name}: {len(msg)} B in, {largest} B out: {ratio:.2f}x")
print(f"   largest: {worst:.2f}x")

# 2. A normal request while 100 to a black hole are pending.
hole = socket.socket()
hole.bind(("127.0.0.1", 0))
hole.listen(0)
hole_port = hole.getsockname()[1]
fillers = []
for _ in range(8):
    c = socket.socket()
    c.settimeout(0.2)
    try:
        c.connect(("127.0.0.1", hole_port))
        fillers.append(c)
    except OSError:
        break
ua = udp()
up = ua.getsockname()[1]
took = []
for r in range(10):
    for i in range(100):
        ua.sendto(req("MESSAGE", f"sip:bob@127.0.0.1:{hole_port};transport=tcp", f"hole-{r}-{i}", up), RELAY)
    ping = udp()
    ping.settimeout(5)
    t0 = time.perf_counter()
    ping.sendto(req("OPTIONS", f"sip:127.0.0.1:{rp}", f"ping-{r}", ping.getsockname()[1]), RELAY)
    ping.recv(65535)
    took.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.1)
took.sort()
print(f"2. a normal request after 100 to a black hole (10 rounds): p50 {took[5]:.2f} ms, max {took[-1]:.2f} ms (the limit is 50 ms)")
hole.close()
for c in fillers:
    c.close()

# 3. 1,000 trickling connections, from 10 addresses; then a new client.
conns = []
for i in range(1000):
    c = socket.socket()
    c.bind((f"127.0.0.{2 + i % 10}", 0))
    c.settimeout(2)
    try:
        c.connect(RELAY)
        conns.append(c)
    except OSError:
        pass
t_end = time.time() + min(secs, 15)
while time.time() < t_end:
    for c in conns:
        try:
            c.send(b"O")
        except OSError:
            pass
    time.sleep(1)
alive = 0
for c in conns:
    c.setblocking(False)
    try:
        if c.recv(1) == b"":
            continue
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
new = socket.socket()
new.settimeout(5)
served = False
try:
    new.connect(RELAY)
    new.send(req("OPTIONS", f"sip:127.0.0.1:{rp}", "new-client", new.getsockname()[1]).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    served = new.recv(65535).startswith(b"SIP/2.0 200")
except OSError:
    pass
print(f"3. {len(conns)} trickling connections opened, {alive} still open after {min(secs, 15)} s; a new client connects and is served: {'yes' if served else 'NO'}")
for c in conns:
    c.close()

# 4. and 5. Floods.
relay_files = [f"{work}/relay-state", f"{work}/pinholes.nft", f"{work}/report.jsonl", f"{work}/report.jsonl.1", f"{work}/pinholes.nft.1"]
reg_files = [f"{work}/reg-state"]
def flood(name, target, pid, files, make):
    s = udp()
    port = s.getsockname()[1]
    s.setblocking(False)
    r0, d0 = rss(pid), du(*files)
    n, t_end = 0, time.time() + secs
    while time.time() < t_end:
        for _ in range(50):
            try:
                s.sendto(make(n, port), target)
            except BlockingIOError:
                pass
            n += 1
        try:
            while True:
                s.recv(65535)
        except BlockingIOError:
            pass
        time.sleep(0.005)
    time.sleep(1)
    r1, d1 = rss(pid), du(*files)
    print(f"   {name}: {n} sent in {secs} s; RSS {mib(r0)} -> {mib(r1)}, disk {mib(d0)} -> {mib(d1)}")

print(f"4. floods of {secs} s each:")
flood("sealed ACKs with SDP from nobody (relay)", RELAY, relay_pid, relay_files,
      lambda n, port: sealed_as("ACK", f"ack-{n}", port))
flood("sealed INVITEs from nobody (relay)", RELAY, relay_pid, relay_files,
      lambda n, port: sealed_as("INVITE", f"inv-{n}", port))
flood("REGISTERs without credentials (registrar)", REG, reg_pid, reg_files,
      lambda n, port: (f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{n}\r\n"
                       f"From: <sip:alice@example.com>;tag={n}\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg-{n}\r\nCSeq: 1 REGISTER\r\n"
                       f"Contact: <sip:alice@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n").encode())
flood("certificate queries (registrar)", REG, reg_pid, reg_files,
      lambda n, port: req("OPTIONS", "sip:alice@example.com", f"q-{n}", port, "Accept: application/pkix-cert\r\n"))

sessions = pinholes = 0
for root, _, files in os.walk(f"{work}/relay-state"):
    if root.endswith("/sessions"):
        sessions += len(files)
    if root.endswith("/pinholes"):
        pinholes += len([f for f in files if f.endswith(".yaml")])
nft = open(f"{work}/pinholes.nft").read() if os.path.exists(f"{work}/pinholes.nft") else ""
print(f"5. made by unauthenticated senders: {sessions} sessions, {pinholes} calls with pinholes, "
      f"{nft.count('add element')} pinhole additions in the pinhole file")
PY
