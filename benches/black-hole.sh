#!/usr/bin/env bash
# A next hop that never answers holds up only its own messages: a release
# relay on UDP, a TCP "black hole" (a listener whose accept queue is full,
# so a connection's SYN goes unanswered until the relay's connect timeout),
# and ROUNDS rounds of: 100 requests, each its own call, routed to the
# black hole, then one normal request routed to a UDP next hop that
# answers. Prints how long each normal request took from the sender to
# that next hop (p50, p90, max), and how many black-hole requests were
# still pending (not yet answered 503) when it arrived.
#
# Usage: bash benches/black-hole.sh [ROUNDS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
bin=$PWD/target/release/sipseal
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
relay_pid=
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

PORT=25170
"$bin" relay --listen udp:127.0.0.1:$PORT --identity keys/proxy-b-ec --hop-allow 127.0.0.0/8 \
    --state "$work/state" --quiet > "$work/relay.log" 2>&1 &
relay_pid=$!
for _ in $(seq 100); do
    ss -lunH | grep -q "127.0.0.1:$PORT " && break
    sleep 0.05
done

python3 - "$PORT" "$rounds" <<'PY'
import socket, sys, time
port, rounds = int(sys.argv[1]), int(sys.argv[2])
relay = ("127.0.0.1", port)

# The black hole: fill a listener's accept queue (never accepted).
hole = socket.socket()
hole.bind(("127.0.0.1", 0))
hole.listen(8)
hole_port = hole.getsockname()[1]
fillers = []
while True:
    c = socket.socket()
    c.setblocking(False)
    if c.connect_ex(("127.0.0.1", hole_port)) not in (0, 115):
        break
    time.sleep(0.002)
    fillers.append(c)
    # A SYN still unanswered after a moment: the queue is full.
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        probe.connect(("127.0.0.1", hole_port))
        fillers.append(probe)
    except OSError:
        break

ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ua.bind(("127.0.0.1", 0))
ua.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
ua_port = ua.getsockname()[1]
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
sink_port = sink.getsockname()[1]

def request(call_id, route):
    return (f"OPTIONS sip:bob@b.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{ua_port};branch=z9hG4bK{call_id};rport\r\n"
            f"Max-Forwards: 70\r\nRoute: {route}\r\n"
            f"From: <sip:alice@a.example.com>;tag=a1\r\nTo: <sip:bob@b.example.com>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:alice@127.0.0.1:{ua_port}>\r\nContent-Length: 0\r\n\r\n").encode()

to_hole = f"<sip:127.0.0.1:{hole_port};transport=tcp;lr>"
to_sink = f"<sip:127.0.0.1:{sink_port};transport=udp;lr>"
took, pending = [], []
ua.setblocking(False)
answered = 0
for r in range(rounds):
    for i in range(100):
        ua.sendto(request(f"hole-{r}-{i}", to_hole), relay)
    t0 = time.perf_counter()
    ua.sendto(request(f"normal-{r}", to_sink), relay)
    sink.settimeout(10)
    while True:
        data, _ = sink.recvfrom(65535)
        if f"normal-{r}".encode() in data:
            break
    took.append((time.perf_counter() - t0) * 1000)
    # Answers (503) to black-hole requests that came back by now.
    try:
        while True:
            ua.recv(65535)
            answered += 1
    except BlockingIOError:
        pass
    pending.append(100 * (r + 1) - answered)
    time.sleep(0.05)
took.sort()
q = lambda p: took[min(len(took) - 1, int(p * len(took)))]
print(f"{rounds} normal requests, each after 100 to the black hole: "
      f"p50 {q(0.5):.2f} ms  p90 {q(0.9):.2f} ms  max {took[-1]:.2f} ms; "
      f"black-hole requests pending when it arrived: {min(pending)}..{max(pending)}")
PY
