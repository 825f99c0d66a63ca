#!/usr/bin/env bash
# The whole system on one box: the collector with its embedded broker and SQLite, the sample
# customers, and nine agents replaying lab captures as nine subscriber lines. The three lines
# behind access node OLT-NORTH-1 replay a degraded network, one line a slow home network, the
# rest healthy traffic. The captures are moved to the last few minutes, so the data is current.
#
# Usage: config/quickstart.sh [--once]   (--once: exit after the first incident is shown)
# Environment: EDGEPROBE_HTTP (default 127.0.0.1:8080), EDGEPROBE_MQTT_PORT (default 11883).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
http=${EDGEPROBE_HTTP:-127.0.0.1:8080}
mqtt_port=${EDGEPROBE_MQTT_PORT:-11883}
work=$(mktemp -d)
trap 'kill "${collector:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --quiet --manifest-path "$root/Cargo.toml" -p edgeprobe-agent -p edgeprobe-collector
bin="$root/target/debug"
sed -e "s/127.0.0.1:11883/127.0.0.1:$mqtt_port/" -e "s/127.0.0.1:8080/$http/" \
    -e "s|\"edgeprobe-demo\"|\"$work/data\"|" "$root/config/quickstart.toml" >"$work/collector.toml"

# Each agent logs in to the embedded broker with a login of its own.
lines=(line-a1 line-a2 line-a3 line-b1 line-b2 line-b3 line-c1 line-c2 line-c3)
declare -A password
printf '[broker.embedded_users]\n' >>"$work/collector.toml"
for line in "${lines[@]}"; do
    password[$line]=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '"gw-%s" = "%s"\n' "$line" "${password[$line]}" >>"$work/collector.toml"
done

"$bin/edgeprobe-collector" --config "$work/collector.toml" import-customers "$root/config/customers.example.csv"
"$bin/edgeprobe-collector" --config "$work/collector.toml" &
collector=$!
for _ in $(seq 50); do curl -sf "http://$http/api/v1/health" >/dev/null && break; sleep 0.2; done
# Reports sent before the collector has subscribed would not reach it: wait for that too.
for _ in $(seq 100); do
    curl -sf "http://$http/metrics" | grep -q '^edgeprobe_collector_mqtt_connected 1' && break
    sleep 0.1
done

# Whole minutes in the past, so every window is complete when it arrives.
start=$(( ($(date +%s) - 240) / 60 * 60 + 1 ))
replay() { # replay LINE CAPTURE
    printf '[agent]\nid = "gw-%s"\n[measure]\nreport_interval_secs = 10\n[subscribers]\nmode = "cpe"\nsubscriber_id = "%s"\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\nusername = "gw-%s"\npassword = "%s"\n' \
        "$1" "$1" "$mqtt_port" "$1" "${password[$1]}" >"$work/$1.toml"
    "$bin/edgeprobe" replay "$root/tests/fixtures/$2" --config "$work/$1.toml" --publish --start-at "$start" 2>/dev/null
}
agents=()
for line in line-a1 line-a2 line-a3; do replay "$line" exp_slow_network.pcap & agents+=($!); done
for line in line-b1 line-b2 line-b3 line-c2 line-c3; do replay "$line" exp_healthy.pcap & agents+=($!); done
replay line-c1 exp_slow_home.pcap & agents+=($!)
wait "${agents[@]}"

echo "agents replayed; waiting for the collector to correlate..."
shown=
for _ in $(seq 90); do
    incidents=$(curl -sf "http://$http/api/v1/incidents")
    if [ "$incidents" != '{"incidents":[]}' ]; then
        # Windows are evaluated oldest first; give the rest of this pass a moment.
        sleep 2
        curl -sf "http://$http/api/v1/incidents" | python3 -m json.tool
        shown=1
        break
    fi
    sleep 1
done
# Nothing after 90 s: show what the collector counted, to tell where the reports went.
[ -n "$shown" ] || curl -sf "http://$http/metrics" | grep '^edgeprobe_collector_' >&2 || true
echo
echo "API: http://$http/api/v1/incidents  http://$http/api/v1/actions  http://$http/api/v1/customers/C-1001"
echo "     http://$http/api/v1/agents  http://$http/metrics  console: http://$http/"
[ "${1:-}" = "--once" ] && exit 0
echo "Ctrl-C stops the collector."
wait "$collector"
