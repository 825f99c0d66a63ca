#!/usr/bin/env bash
# Records the bufferbloat fixtures: a 1 Mbit/s line (tbf, both directions) whose queue is deep
# (400 ms) on the access side (lab_bloat_network.pcapng: the gateway's WAN leg g1 and the
# network's n0 toward it), deep on the home side (lab_bloat_home.pcapng: both legs of the home
# delay line, as a Wi-Fi access point's queue), or short (lab_bloat_none.pcapng: the access
# side again, with a 10 ms queue, as a smart-queue setting keeps it: the same rate and load,
# no bloat). The delay lines only ever carry the shaped 1 Mbit/s, far below what they forward,
# so their own socket queues never fill.
#
# Timeline: 10 s of small requests (a new connection every 250 ms) with the line idle, then
# 18 s with a bulk download and a bulk upload running as the small requests go on, then 10 s
# idle again. Captured on g0 with a 128-byte snap length to keep the fixtures small.
# Usage: record_bufferbloat.sh [network|home|none]... (all three by default). Run as root;
# needs what record.sh needs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
. "$fixtures/lab.env"
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work"' EXIT
RATE=1mbit

shape() { # shape NS IF LATENCY
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$RATE" burst 4kb latency "$3"
}

record() {
    local where=$1 name="lab_bloat_$1.pcapng"
    "$here/lab.sh" up "$HOME_MS" "$NET_MS"
    case "$where" in
        network) shape ep-gw g1 400ms; shape ep-net n0 400ms ;;
        home) shape ep-home h0 400ms; shape ep-home h1 400ms ;;
        none) shape ep-gw g1 10ms; shape ep-net n0 10ms ;;
    esac
    ip netns exec ep-srv python3 "$here/http_server.py" 198.51.100.10 8080 </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 50); do
        ip netns exec ep-cli curl -s -o /dev/null http://198.51.100.10:8080/ && break
        sleep 0.2
    done
    head -c 40000000 /dev/zero >"$work/upload"
    ip netns exec ep-gw dumpcap -q -s 128 -i g0 -w "$work/$name" >/dev/null 2>&1 &
    local cap=$!
    sleep 1.5
    # The small requests, all along.
    (
        end=$((SECONDS + 38))
        while [ $SECONDS -lt $end ]; do
            ip netns exec ep-cli curl -s -o /dev/null --max-time 5 http://198.51.100.10:8080/bytes/1000 &
            sleep 0.25
        done
        wait
    ) &
    local small=$!
    sleep 10
    ip netns exec ep-cli curl -s -o /dev/null --max-time 18 http://198.51.100.10:8080/bytes/40000000 &
    local down=$!
    ip netns exec ep-cli curl -s -o /dev/null --max-time 18 -H "Expect:" --data-binary "@$work/upload" \
        http://198.51.100.10:8080/upload &
    local up=$!
    wait "$down" "$up" || true
    wait "$small" || true
    sleep 1
    kill -INT "$cap"
    wait "$cap" || true
    install -m 644 "$work/$name" "$fixtures/$name"
    "$here/lab.sh" down
    echo "recorded: $name ($(stat -c %s "$fixtures/$name") bytes)"
}

for where in "${@:-network home none}"; do
    for w in $where; do record "$w"; done
done
