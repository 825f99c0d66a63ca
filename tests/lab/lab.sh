#!/usr/bin/env bash
# The test lab: five network namespaces in a line, every address from documentation ranges.
#
#   ep-cli --- ep-home --- ep-gw --- ep-net --- ep-srv
#   client     delay line  router    delay line  servers
#   192.0.2.10 HOME_MS     g0 | g1   NET_MS      198.51.100.10 (+ .11 with nothing on port 53)
#   2001:db8:1::10                               2001:db8:2::10
#
# The agent's view is the router's LAN leg g0, as on a home gateway: SYN->SYN/ACK there is the
# network side (2 x NET_MS), SYN/ACK->ACK the home side (2 x HOME_MS).
# Usage: lab.sh up [HOME_MS NET_MS] | lab.sh down. Needs root, iproute2, ethtool, python3.
# HOME_LOSS_PCT (default 0) drops that share of the frames crossing the home side.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NS=(ep-cli ep-home ep-gw ep-net ep-srv)

down() {
    for ns in "${NS[@]}"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            ip netns pids "$ns" | xargs -r kill 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

link() { # link NS_A IF_A NS_B IF_B
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    for side in "$1 $2" "$3 $4"; do
        set -- $side
        ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
        ip netns exec "$1" ip link set "$2" up
    done
}

up() {
    local home_ms=${1:-5} net_ms=${2:-20}
    down
    for ns in "${NS[@]}"; do
        ip netns add "$ns"
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    done
    link ep-cli c0 ep-home h0
    link ep-home h1 ep-gw g0
    link ep-gw g1 ep-net n0
    link ep-net n1 ep-srv s0

    ip -n ep-cli addr add 192.0.2.10/24 dev c0
    ip -n ep-cli addr add 2001:db8:1::10/64 dev c0 nodad
    ip -n ep-cli route add default via 192.0.2.1
    ip -n ep-cli -6 route add default via 2001:db8:1::1

    ip -n ep-gw addr add 192.0.2.1/24 dev g0
    ip -n ep-gw addr add 2001:db8:1::1/64 dev g0 nodad
    ip -n ep-gw addr add 198.51.100.1/24 dev g1
    ip -n ep-gw addr add 2001:db8:2::1/64 dev g1 nodad
    ip netns exec ep-gw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

    ip -n ep-srv addr add 198.51.100.10/24 dev s0
    ip -n ep-srv addr add 198.51.100.11/24 dev s0
    ip -n ep-srv addr add 2001:db8:2::10/64 dev s0 nodad
    ip -n ep-srv route add default via 198.51.100.1
    ip -n ep-srv -6 route add default via 2001:db8:2::1

    for side in "ep-home h0 h1 $home_ms ${HOME_LOSS_PCT:-0}" "ep-net n0 n1 $net_ms 0"; do
        set -- $side
        ip netns exec "$1" python3 "$here/delayline.py" "$2" "$3" "$4" "$5" </dev/null >/dev/null 2>&1 &
    done
    # Wait until the path works end to end.
    for _ in $(seq 1 50); do
        if ip netns exec ep-cli ping -c1 -W1 198.51.100.10 >/dev/null 2>&1 &&
            ip netns exec ep-cli ping -6 -c1 -W1 2001:db8:2::10 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "lab: no path from ep-cli to ep-srv" >&2
    return 1
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    *) echo "usage: $0 up [HOME_MS NET_MS] | down" >&2; exit 2 ;;
esac
