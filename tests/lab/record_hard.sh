#!/usr/bin/env bash
# Records the hard-case fixtures from real programs in the lab, then writes tshark's answers
# beside them. Run as root; needs what record.sh needs, and editcap.
#
#   lab_hard.pcapng       a DNS answer 7.5 s after its query (past the agent's 5 s timeout),
#                         and a request whose 2,000-byte URL spans two segments, then a second
#                         request on the same connection;
#   lab_http_snap128.pcap lab_http.pcap cut to a 128-byte snap length (editcap -s 128);
#   lab_tls_snap128.pcapng the same for lab_tls.pcapng;
#   lab_tls_midway.pcapng lab_tls.pcapng from just after its first ClientHello, as a capture
#                         started mid-handshake.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
. "$fixtures/lab.env"
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work"' EXIT

"$here/lab.sh" up "$HOME_MS" "$NET_MS"
cli() { ip netns exec ep-cli "$@"; }
srv() { ip netns exec ep-srv "$@" </dev/null >>"$work/servers.log" 2>&1 & }
ip -n ep-srv addr add 198.51.100.13/24 dev s0
srv python3 "$here/slow_dns.py" 198.51.100.13 53 7.5
srv python3 "$here/http_server.py" 198.51.100.10 8080
sleep 1

ip netns exec ep-gw dumpcap -q -i g0 -w "$work/lab_hard.pcapng" >/dev/null 2>&1 &
cap_pid=$!
sleep 1.5
cli dig @198.51.100.13 +tries=1 +timeout=10 slow.lab.example A >/dev/null || true
long=$(python3 -c 'print("x" * 2000)')
cli curl -s -o /dev/null "http://198.51.100.10:8080/long?q=$long" -o /dev/null http://198.51.100.10:8080/delay/50 || true
sleep 1
kill -INT "$cap_pid"
wait "$cap_pid" || true

editcap -s 128 "$fixtures/lab_http.pcap" "$work/lab_http_snap128.pcap"
editcap -s 128 "$fixtures/lab_tls.pcapng" "$work/lab_tls_snap128.pcapng"
first_hello=$(tshark -n -r "$fixtures/lab_tls.pcapng" -Y 'tls.handshake.type == 1' -T fields -e frame.number | head -1)
total=$(tshark -n -r "$fixtures/lab_tls.pcapng" -T fields -e frame.number | tail -1)
editcap -r "$fixtures/lab_tls.pcapng" "$work/lab_tls_midway.pcapng" "$((first_hello + 1))-$total"

for f in lab_hard.pcapng lab_http_snap128.pcap lab_tls_snap128.pcapng lab_tls_midway.pcapng; do
    install -m 644 "$work/$f" "$fixtures/$f"
    rm -f "$fixtures/answers/$f".*.tsv
    python3 "$here/answers.py" "$fixtures/$f" "$fixtures/answers"
done
echo "recorded: $(cd "$fixtures" && ls lab_hard* lab_*snap128* lab_tls_midway* answers/lab_hard* answers/lab_*snap128* answers/lab_tls_midway*)"
