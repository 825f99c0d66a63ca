#!/usr/bin/env bash
# Records lab_busy_home.pcapng: two devices of one home (their own MAC and address) whose
# journeys interleave on one server address, as with a CDN. The TV (192.0.2.12, a macvlan on the
# client's link, in namespace ep-tv) looks up video.lab.example; the laptop (192.0.2.10) then
# looks up portal.lab.example and logs in (a request answered after 150 ms); only after that
# does the TV connect and fetch 2 MB of video. Both names resolve to 198.51.100.10, both
# connections go to port 8080. Then tshark's answers. Run as root; needs what record.sh needs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
. "$fixtures/lab.env"
work=$(mktemp -d)
trap '"$here/lab.sh" down; ip netns del ep-tv 2>/dev/null || true; rm -rf "$work" /etc/netns/ep-cli /etc/netns/ep-tv' EXIT

"$here/lab.sh" up "$HOME_MS" "$NET_MS"
ip netns add ep-tv
ip -n ep-cli link add link c0 name tv0 address 02:00:00:00:00:12 type macvlan mode bridge
ip -n ep-cli link set tv0 netns ep-tv
ip -n ep-tv link set lo up
ip -n ep-tv addr add 192.0.2.12/24 dev tv0
ip -n ep-tv link set tv0 up
ip -n ep-tv route add default via 192.0.2.1
for ns in ep-cli ep-tv; do
    mkdir -p "/etc/netns/$ns"
    printf "nameserver 198.51.100.10\noptions timeout:2 attempts:1\n" >"/etc/netns/$ns/resolv.conf"
done
laptop() { ip netns exec ep-cli "$@"; }
tv() { ip netns exec ep-tv "$@"; }
srv() { ip netns exec ep-srv "$@" </dev/null >>"$work/servers.log" 2>&1 & }

srv dnsmasq --keep-in-foreground --no-hosts --no-resolv --bind-interfaces --except-interface=lo \
    --listen-address=198.51.100.10 --local=/lab.example/ \
    --address=/portal.lab.example/198.51.100.10 --address=/video.lab.example/198.51.100.10 \
    --pid-file="$work/dnsmasq.pid"
srv python3 "$here/http_server.py" 198.51.100.10 8080
for _ in $(seq 1 50); do tv ping -c1 -W1 198.51.100.10 >/dev/null 2>&1 && break; sleep 0.2; done
sleep 1

ip netns exec ep-gw dumpcap -q -i g0 -w "$work/lab_busy_home.pcapng" >/dev/null 2>&1 &
cap_pid=$!
sleep 1.5
# The TV's lookup, then (0.1 s later) the laptop's whole login, then the TV's connection.
tv dig +short video.lab.example A >/dev/null &
lookup=$!
sleep 0.1
laptop curl -4 -s -o /dev/null http://portal.lab.example:8080/delay/150 &
login=$!
sleep 0.3
tv curl -4 -s -o /dev/null --resolve video.lab.example:8080:198.51.100.10 http://video.lab.example:8080/bytes/2000000 || true
wait "$lookup" "$login" || true
sleep 1
kill -INT "$cap_pid"
wait "$cap_pid" || true

install -m 644 "$work/lab_busy_home.pcapng" "$fixtures/lab_busy_home.pcapng"
rm -f "$fixtures/answers/lab_busy_home.pcapng".*.tsv
python3 "$here/answers.py" "$fixtures/lab_busy_home.pcapng" "$fixtures/answers"
echo "recorded: $(cd "$fixtures" && ls lab_busy_home* answers/lab_busy_home*)"
