#!/usr/bin/env bash
# Records the journey fixture from real programs, then writes tshark's answers beside it. The
# client resolves through dnsmasq (a resolv.conf for its namespace), so each curl makes the
# lookup, connect, TLS and HTTP steps a browser would. Scenarios, in order:
#   1. selfcare.lab.example over HTTPS, complete;
#   2. selfcare-old.lab.example: NXDOMAIN, a failing first step;
#   3. video.lab.example:8080, 2 MB: complete after its first 1 MB;
#   4. video.lab.example:8080 at 200 kB/s, given up after a second (abandoned);
#   5. two selfcare.lab.example episodes at once, 30 ms apart (interleaved).
# Run as root; needs what record.sh needs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
HOME_MS=${HOME_MS:-5}
NET_MS=${NET_MS:-20}
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work" /etc/netns/ep-cli' EXIT

"$here/lab.sh" up "$HOME_MS" "$NET_MS"
mkdir -p /etc/netns/ep-cli
printf "nameserver 198.51.100.10\noptions timeout:2 attempts:1\n" >/etc/netns/ep-cli/resolv.conf
cli() { ip netns exec ep-cli "$@"; }
srv() { ip netns exec ep-srv "$@" </dev/null >>"$work/servers.log" 2>&1 & }

srv dnsmasq --keep-in-foreground --no-hosts --no-resolv --bind-interfaces --except-interface=lo \
    --listen-address=198.51.100.10 --local=/lab.example/ \
    --address=/selfcare.lab.example/198.51.100.10 --address=/video.lab.example/198.51.100.10 \
    --pid-file="$work/dnsmasq.pid"
mkdir -p "$work/nginx/tmp"
cp "$here/nginx.conf" "$work/nginx/nginx.conf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=lab.example" \
    -keyout "$work/nginx/lab.key" -out "$work/nginx/lab.crt" >/dev/null 2>&1
srv nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
srv python3 "$here/http_server.py" 198.51.100.10 8080
sleep 1

ip netns exec ep-gw dumpcap -q -i g0 -w "$work/lab_journeys.pcapng" >/dev/null 2>&1 &
cap_pid=$!
sleep 1.5
get() { cli curl -4 -sk -o /dev/null "$@" || true; }
get https://selfcare.lab.example/
sleep 0.5
get https://selfcare-old.lab.example/
sleep 0.5
get http://video.lab.example:8080/bytes/2000000
sleep 0.5
get --limit-rate 200k --max-time 1 http://video.lab.example:8080/bytes/5000000
sleep 0.5
get https://selfcare.lab.example/ &
first=$!
sleep 0.03
get https://selfcare.lab.example/
wait "$first" || true
sleep 1
kill -INT "$cap_pid"
wait "$cap_pid" || true

install -m 644 "$work/lab_journeys.pcapng" "$fixtures/lab_journeys.pcapng"
rm -f "$fixtures/answers/lab_journeys.pcapng".*.tsv
python3 "$here/answers.py" "$fixtures/lab_journeys.pcapng" "$fixtures/answers"
echo "recorded: $(cd "$fixtures" && ls lab_journeys* answers/lab_journeys*)"
