#!/usr/bin/env bash
# The flagship walkthrough as a demo (issue 30, docs/guide/12-flagship.md):
# two real baresip phones, each behind its own `sipseal edge`, calling
# across proxy-a (designated: it opens the SDP, opens pinholes, records)
# and proxy-b (blind), with the registrar. alice calls bob, SRTP flows
# both ways, she holds, her edge restarts, she resumes and hangs up; her
# call to carol (no certificate) is refused; the TLS capture is
# decrypted to show every SDP sealed between the edges and plain only on
# the phone links; proxy-a's recording plays alice's tone.
#
#   bash demos/flagship.sh
#
# It is the CI test tests/edge_flagship.rs, told to tell its story. Every
# process runs in a network namespace of its own (fixed ports, nftables
# and a packet capture that touch nothing on this machine): as root
# directly, otherwise in a user namespace (`unshare --map-root-user`,
# which Debian allows unprivileged users). Needs baresip, tshark and
# nftables (the packages .ci/run installs). What it leaves:
# target/tmp/captures/edge-flagship.{pcapng,keys,txt} and
# edge-flagship-alice.wav (proxy-a's recording of alice).
#
# Exit: 0 the walkthrough ran; 1 it failed (the daemons' logs follow);
# 2 something it needs is missing.
#
# SIPSEAL_FLAGSHIP_BIN: an already built tests/edge_flagship.rs binary
# (skips cargo); SIPSEAL_FLAGSHIP_USERNS=1: the user namespace even as root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
    echo "flagship: needs ${missing[*]}" >&2
    echo "hint: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 2
fi

bin=${SIPSEAL_FLAGSHIP_BIN:-}
if [ -z "$bin" ]; then
    echo "building the walkthrough (cargo test --no-run --test edge_flagship) ..." >&2
    built=$(cargo test --no-run --test edge_flagship --message-format=json) || {
        echo "flagship: the build failed (run: cargo test --no-run --test edge_flagship)" >&2
        exit 2
    }
    bin=$(printf '%s\n' "$built" | sed -n 's/.*"executable":"\([^"]*edge_flagship-[^"]*\)".*/\1/p' | tail -n 1)
    [ -n "$bin" ] || { echo "flagship: cargo named no test binary" >&2; exit 2; }
fi

run=("$bin" --exact the_flagship_walkthrough_two_baresip_phones_across_two_relays
     --nocapture --test-threads 1)
if [ "$(id -u)" != 0 ] || [ "${SIPSEAL_FLAGSHIP_USERNS:-0}" = 1 ]; then
    if ! unshare --map-root-user --user --net true 2>/dev/null; then
        echo "flagship: cannot make a user namespace here (unprivileged user namespaces are off)" >&2
        echo "hint: run it as root (sudo bash demos/flagship.sh), or: sudo sysctl -w kernel.unprivileged_userns_clone=1" >&2
        exit 2
    fi
    run=(unshare --map-root-user --user --net -- "${run[@]}")
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"${run[@]}" >"$out" 2>&1 || status=$?
if [ "$status" -ne 0 ] || ! grep -q '^test result: ok\. 1 passed' "$out"; then
    cat "$out"
    echo "flagship: the walkthrough failed (exit $status); the logs are above" >&2
    exit 1
fi
if grep -q SKIPPED "$out"; then
    grep SKIPPED "$out" >&2
    exit 2
fi
# The story: the test's own lines (a step, or its indented detail),
# without the test harness's.
sed -e 's/^test [a-z_]* \.\.\. //' "$out" | grep -e '^▶' -e '^      '
