#!/usr/bin/env bash
# Records the QUIC lab fixtures from aioquic (PyPI) clients and servers in the namespace lab:
# lab_quic.pcapng (versions 1 and 2, a compatible negotiation from 1 to 2, a Version
# Negotiation, a Retry, IPv6, several SNIs, parallel connections) and lab_quic_lossy.pcapng
# (the same with HOME_LOSS_PCT of the home side's frames dropped). Their tshark reference is
# computed by the tests. Run as root; needs what lab.sh needs, dumpcap, openssl and aioquic.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
HOME_MS=${HOME_MS:-5}
NET_MS=${NET_MS:-20}
LOSS=${HOME_LOSS_PCT:-10}
work=$(mktemp -d)
trap '"$here/lab.sh" down; rm -rf "$work"' EXIT
python3 -c 'import aioquic' || { echo "record_quic.sh: pip install aioquic" >&2; exit 1; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=lab.example" \
    -keyout "$work/lab.key" -out "$work/lab.crt" >/dev/null 2>&1

cli() { ip netns exec ep-cli python3 "$here/quic_client.py" "$@" 2>>"$work/clients.log" || true; }

record() { # record FILE LOSS_PCT
    HOME_LOSS_PCT=$2 "$here/lab.sh" up "$HOME_MS" "$NET_MS"
    # 443 prefers v1, 4435 prefers v2 (a v1 client that offers v2 is moved to it), 4434 has v1
    # only (a v2 client gets Version Negotiation), 4433 sends a Retry first.
    ip netns exec ep-srv python3 "$here/quic_server.py" "$work/lab.crt" "$work/lab.key" \
        198.51.100.10:443:v1+v2 '[2001:db8:2::10]:443:v1+v2' 198.51.100.10:4433:v1+retry \
        198.51.100.10:4434:v1 198.51.100.10:4435:v2+v1 </dev/null >>"$work/server.log" 2>&1 &
    sleep 2
    ip netns exec ep-gw dumpcap -q -i g0 -w "$work/$1" >/dev/null 2>&1 &
    local cap=$!
    sleep 1.5
    cli 198.51.100.10:443:v1.lab.example:v1
    cli 198.51.100.10:443:v2.lab.example:v2
    cli '[2001:db8:2::10]:443:v6.lab.example:v1'
    cli 198.51.100.10:4435:compatible.lab.example:from-v1+v2+v1
    cli 198.51.100.10:4434:negotiated.lab.example:from-v2+v2+v1
    cli 198.51.100.10:4433:retry.lab.example:v1
    cli 198.51.100.10:443:a.lab.example:v1 198.51.100.10:443:b.lab.example:v1 198.51.100.10:443:c.lab.example:v2
    sleep 1
    kill -INT "$cap"
    wait "$cap" || true
    "$here/lab.sh" down
}

record lab_quic.pcapng 0
record lab_quic_lossy.pcapng "$LOSS"
for f in lab_quic.pcapng lab_quic_lossy.pcapng; do
    install -m 644 "$work/$f" "$fixtures/$f"
done
printf "HOME_MS=%s\nNET_MS=%s\n" "$HOME_MS" "$NET_MS" | cmp -s - "$fixtures/lab.env" ||
    echo "record_quic.sh: lab.env holds other delays; the QUIC tests read them from there" >&2
cat "$work/clients.log" >&2
echo "recorded: lab_quic.pcapng lab_quic_lossy.pcapng"
