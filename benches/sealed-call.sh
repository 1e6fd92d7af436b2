# Sourced by the live benchmarks: sealed_call WORK BIN writes, in WORK, one
# sealed call for SIPp to replay under new Call-IDs: alice's INVITE for bob
# and proxy-a (designated, P-256) as body.der with its Proxy-Inspect-Body
# and Content-ID (Proxy-Inspect-Body.txt, Content-ID.txt), bob's 200 under
# the session key as reply.der, and bindings.yaml (alice at 127.0.0.1).
# Run from the repository's root (it copies keys/ and samples/ there).
sealed_call() { # work bin
    local work=$1 bin=$2 repo=$PWD
    (
        cd "$work"
        cp -r "$repo/keys" "$repo/samples" .
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
}
