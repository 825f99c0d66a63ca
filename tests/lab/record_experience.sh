#!/usr/bin/env bash
# Records the experience fixtures for the collector's tests: the same web sessions (a DNS lookup,
# then HTTP to two services, portal.lab.example on nginx and video.lab.example on http.server)
# once a second for DURATION seconds, under four conditions:
#   exp_healthy.pcap       home 2 ms, network 10 ms
#   exp_slow_network.pcap  network 120 ms: what customers behind a failing access node see
#   exp_slow_home.pcap     home 60 ms: a slow home network, the network fine
#   exp_slow_service.pcap  video.lab.example answers after 1.5 s; everything else fine
#   exp_portal_down.pcap   the portal's web server is down (connections refused); the rest fine
# Delays are one way, so round trips are twice them. Run as root; needs what record.sh needs.
# Arguments name the captures to record again; none records them all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
DURATION=${DURATION:-32}
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work"' EXIT

record() { # record NAME HOME_MS NET_MS VIDEO_DELAY_MS [PORTAL up|down]
    if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $1 "* ]]; then return; fi
    "$here/lab.sh" down
    "$here/lab.sh" up "$2" "$3"
    srv() { ip netns exec ep-srv "$@" </dev/null >>"$work/servers.log" 2>&1 & }
    srv dnsmasq --keep-in-foreground --no-hosts --no-resolv --bind-interfaces --except-interface=lo \
        --listen-address=198.51.100.10 --local=/lab.example/ --address=/lab.example/198.51.100.10 \
        --pid-file="$work/dnsmasq.pid"
    mkdir -p "$work/nginx/tmp"
    cp "$here/nginx.conf" "$work/nginx/nginx.conf"
    [ -f "$work/nginx/lab.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=lab.example" -keyout "$work/nginx/lab.key" -out "$work/nginx/lab.crt" >/dev/null 2>&1
    [ "${5:-up}" = down ] || srv nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
    srv python3 "$here/http_server.py" 198.51.100.10 8080
    sleep 1
    ip netns exec ep-gw tcpdump -q -i g0 -U -w "$work/$1" >/dev/null 2>&1 &
    local cap=$!
    sleep 1.5
    local end=$((SECONDS + DURATION))
    while [ "$SECONDS" -lt "$end" ]; do
        ip netns exec ep-cli dig +tries=1 +timeout=2 @198.51.100.10 portal.lab.example A >/dev/null || true
        ip netns exec ep-cli curl -s -o /dev/null --max-time 5 -H 'Host: portal.lab.example' http://198.51.100.10/ || true
        ip netns exec ep-cli curl -s -o /dev/null --max-time 5 -H 'Host: video.lab.example' \
            "http://198.51.100.10:8080/delay/$4" || true
        sleep 0.5
    done
    sleep 1
    kill -INT "$cap"
    wait "$cap" || true
    install -m 644 "$work/$1" "$fixtures/$1"
}

only=("$@")
record exp_healthy.pcap 2 10 0
record exp_slow_network.pcap 2 120 0
record exp_slow_home.pcap 60 10 0
record exp_slow_service.pcap 2 10 1500
record exp_portal_down.pcap 2 10 0 down
echo "recorded: $(cd "$fixtures" && ls -la exp_*)"
