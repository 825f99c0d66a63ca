#!/usr/bin/env bash
# Records the lab fixtures from real programs in network namespaces, then writes tshark's answers
# beside them. Run as root from anywhere; needs iproute2, iputils-ping, ethtool, python3, dnsmasq,
# nginx-light, dnsutils (dig), curl, tcpdump and tshark (dumpcap).
#
# Delays: HOME_MS on the home side, NET_MS on the network side of the capture point, so the
# tests can also check that connect times split the right way round.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
HOME_MS=${HOME_MS:-5}
NET_MS=${NET_MS:-20}
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work"' EXIT

"$here/lab.sh" up "$HOME_MS" "$NET_MS"
cli() { ip netns exec ep-cli "$@"; }
srv() { ip netns exec ep-srv "$@" </dev/null >>"$work/servers.log" 2>&1 & }

# DNS: dnsmasq answers lab.example itself (NXDOMAIN for unknown names), forwards fail.example to
# an upstream that fails (SERVFAIL), refuses everything else, and serves a TXT record too big for
# one Ethernet frame (a fragmented answer). 198.51.100.11 has no DNS server: queries go unanswered.
big=$(python3 -c "print(','.join(['\"' + 'edgeprobe-lab-' * 14 + '\"'] * 12))")
srv python3 "$here/failing_upstream.py" 198.51.100.11 5300
srv dnsmasq --keep-in-foreground --no-hosts --no-resolv --bind-interfaces --except-interface=lo \
    --listen-address=198.51.100.10 --listen-address=2001:db8:2::10 --edns-packet-max=4096 \
    --local=/lab.example/ --address=/ok.lab.example/198.51.100.10 --address=/ok.lab.example/2001:db8:2::10 \
    --server=/fail.example/198.51.100.11#5300 --txt-record=big.lab.example,"$big" --pid-file="$work/dnsmasq.pid"
mkdir -p "$work/nginx/tmp"
cp "$here/nginx.conf" "$work/nginx/nginx.conf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=lab.example" \
    -keyout "$work/nginx/lab.key" -out "$work/nginx/lab.crt" >/dev/null 2>&1
srv nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
srv python3 "$here/http_server.py" 198.51.100.10 8080
# A second client address whose traffic the server answers with a small MSS, so the
# ClientHello from it spans several segments.
ip -n ep-cli addr add 192.0.2.11/24 dev c0
ip -n ep-srv route add 192.0.2.11/32 via 198.51.100.1 advmss 200
sleep 1

capture() { # capture TOOL FILE: starts a capture on the gateway's LAN leg
    case $1 in
        dumpcap) ip netns exec ep-gw dumpcap -q -i g0 -w "$2" >/dev/null 2>&1 & ;;
        tcpdump) ip netns exec ep-gw tcpdump -q -i g0 -U --time-stamp-precision=nano -w "$2" >/dev/null 2>&1 & ;;
    esac
    cap_pid=$!
    sleep 1.5
}
stop_capture() { sleep 1; kill -INT "$cap_pid"; wait "$cap_pid" || true; }

dig_q() { cli dig +tries="${TRIES:-1}" +timeout=2 "$@" >/dev/null || true; }

capture dumpcap "$work/lab_dns.pcapng"
dig_q @198.51.100.10 ok.lab.example A
dig_q @2001:db8:2::10 ok.lab.example AAAA
dig_q @198.51.100.10 missing.lab.example A
dig_q @198.51.100.10 www.fail.example A
dig_q @198.51.100.10 other.test A
dig_q @198.51.100.10 +tcp ok.lab.example A
dig_q @198.51.100.10 +bufsize=4096 big.lab.example TXT
TRIES=3 dig_q @198.51.100.11 ok.lab.example A
stop_capture

capture tcpdump "$work/lab_tcp.pcap"
cli curl -s -o /dev/null http://198.51.100.10/ || true
cli curl -s -o /dev/null 'http://[2001:db8:2::10]/' || true
cli curl -s -o /dev/null http://198.51.100.10:81/ || true
cli curl -s -o /dev/null --connect-timeout 4 http://198.51.100.12/ || true
stop_capture

capture dumpcap "$work/lab_tls.pcapng"
tls() { cli curl -sk -o /dev/null --max-time 5 "$@" || true; }
tls --tlsv1.3 --resolve tls13.lab.example:443:198.51.100.10 https://tls13.lab.example/
tls --resolve tls12.lab.example:8443:198.51.100.10 https://tls12.lab.example:8443/
tls -g --resolve v6.lab.example:443:[2001:db8:2::10] 'https://v6.lab.example/'
tls --curves X25519:secp384r1 --resolve hrr.lab.example:9443:198.51.100.10 https://hrr.lab.example:9443/
tls --interface 192.0.2.11 --resolve split.lab.example:443:198.51.100.10 https://split.lab.example/
tls --tls-max 1.2 --resolve refused.lab.example:443:198.51.100.10 https://refused.lab.example/
stop_capture

capture tcpdump "$work/lab_http.pcap"
cli curl -s -o /dev/null http://198.51.100.10:8080/delay/100 -o /dev/null http://198.51.100.10:8080/delay/50 || true
cli python3 "$here/pipeline.py" 198.51.100.10 8080 || true
head -c 3000 /dev/zero | tr '\0' x >"$work/upload"
cli curl -s -o /dev/null -H 'Expect: 100-continue' --data-binary @"$work/upload" http://198.51.100.10:8080/upload || true
cli curl -s -o /dev/null -H 'Host: www.lab.example' http://198.51.100.10/ || true
stop_capture

for f in lab_dns.pcapng lab_tcp.pcap lab_tls.pcapng lab_http.pcap; do
    install -m 644 "$work/$f" "$fixtures/$f"
    rm -f "$fixtures/answers/$f".*.tsv
    python3 "$here/answers.py" "$fixtures/$f" "$fixtures/answers"
done
printf "HOME_MS=%s\nNET_MS=%s\n" "$HOME_MS" "$NET_MS" >"$fixtures/lab.env"
echo "recorded: $(cd "$fixtures" && ls lab_* answers/lab_*)"
