#!/usr/bin/env python3
"""An independent reader of the packed CBOR report (schema version 2), written from the contract
alone: the field numbers declared in agent/wire/src/report.rs and the rules in the head of
agent/wire/src/packed.rs. CBOR is read by the PyPI `cbor2` package and histograms by
`hdrhistogram`, none of the project's code.

Usage: packed_decode.py REPORT.cbor REPORT.json [REPORT.cbor REPORT.json ...]
Decodes each CBOR and compares it, field by field, with the named JSON form of the same report
(histograms by count, min, max and p50/p90/p99, each side's read from its own bytes). Prints
every difference and exits 1 if there is one."""
import base64
import json
import sys

import cbor2
from hdrh.histogram import HdrHistogram

from hdr_decode import percentile  # the rank rule of the Java and Rust libraries

REPORT = {0: "v", 1: "agent_id", 2: "boot_id", 3: "seq", 4: "window_start", 5: "window_end", 6: "capture",
          7: "subscribers", 8: "agent", 9: "part", 10: "parts"}
CAPTURE = {0: "packets", 1: "bytes", 2: "kernel_drops", 3: "unparsed", 4: "evictions"}
EVICTIONS = {0: "flows", 1: "dns", 2: "streams", 3: "fragments", 4: "subscribers", 5: "samples",
             6: "dhcp_bindings", 7: "service_names", 8: "episodes"}
AGENT = {0: "spool_depth", 1: "spool_dropped", 2: "publish_failures", 3: "spool_write_errors"}
LINE = {0: "subscriber", 1: "metrics", 2: "counters", 3: "services", 4: "journeys", 5: "resolvers", 6: "dns_late"}
SERVICE = {0: "service", 1: "metrics", 2: "counters"}
RESOLVER = {0: "resolver", 1: "dns", 2: "latency"}
JOURNEY = {0: "journey", 1: "phase", 2: "channel", 3: "latency", 4: "ok", 5: "failed", 6: "timeout",
           7: "abandoned", 8: "failed_steps"}
METRICS = ["connect_network", "connect_home", "dns", "tls_handshake", "http_ttfb", "quic_hello", "quic_home",
           "quic_handshake", "rtt_home", "rtt_network", "rtt_home_loaded", "rtt_network_loaded"]
COUNTERS = {0: "connects", 1: "connect_refused", 2: "connect_timeout", 3: "dns", 4: "tls_ok", 5: "tls_failed",
            6: "http_responses", 7: "http_4xx", 8: "http_5xx", 9: "flows", 10: "bytes_up", 11: "bytes_down",
            12: "retrans_up", 13: "retrans_down", 14: "dns_late", 15: "quic_ok", 16: "quic_incomplete",
            17: "quic_bytes_up", 18: "quic_bytes_down", 19: "loaded_bytes_up", 20: "loaded_bytes_down",
            21: "packets_up", 22: "packets_down"}
RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET",
          "NOTAUTH", "NOTZONE"]


def named(m, fields):
    unknown = set(m) - set(fields)
    if unknown:
        raise ValueError(f"unknown field numbers {sorted(unknown)} (fields: {fields})")
    return {fields[k]: v for k, v in m.items()}


def rcodes(m):
    def name(k):
        if isinstance(k, str):
            return k
        if k == -1:
            return "TIMEOUT"
        return RCODES[k] if 0 <= k < len(RCODES) else f"RCODE{k}"
    return {name(k): v for k, v in m.items()}


def counters(m):
    c = named(m, COUNTERS)
    if "dns" in c:
        c["dns"] = rcodes(c["dns"])
    return c


def summary(h):
    return {"count": h.get_total_count(), "min": h.get_lowest_equivalent_value(h.get_min_value()),
            "max": h.get_highest_equivalent_value(h.get_max_value()), "p50": percentile(h, 0.50),
            "p90": percentile(h, 0.90), "p99": percentile(h, 0.99)}


def hdr(raw):
    """A histogram from its V2 compressed bytes (CBOR) or base64 text (JSON)."""
    text = raw if isinstance(raw, str) else base64.b64encode(raw).decode()
    return HdrHistogram.decode(text)


def metrics(m):
    return {k: hdr(v) for k, v in named(m, dict(enumerate(METRICS))).items() if len(v) > 0}


def line(m):
    s = named(m, LINE)
    services = [named(x, SERVICE) for x in s.get("services", [])]
    for svc in services:
        svc["metrics"] = {k: summary(h) for k, h in metrics(svc.get("metrics", {})).items()}
        if "counters" in svc:
            svc["counters"] = counters(svc["counters"])
    raw = named(s.get("metrics", {}), dict(enumerate(METRICS)))
    own = {}
    for i, name in enumerate(METRICS):
        if name in raw:
            # Present: the line's own histogram, or empty for "none".
            if len(raw[name]) > 0:
                own[name] = summary(hdr(raw[name]))
            continue
        # Left out: the merge of the services' histograms of that metric, if any has one.
        parts = [hdr(x[1][i]) for x in s.get("services", []) if i in x.get(1, {}) and len(x[1][i]) > 0]
        if parts:
            merged = parts[0]
            for p in parts[1:]:
                merged.add(p)
            own[name] = summary(merged)
    s["metrics"] = own
    s["services"] = services
    if "counters" in s:
        s["counters"] = counters(s["counters"])
    s["resolvers"] = []
    for r in m.get(5, []):
        r = named(r, RESOLVER)
        r["dns"] = rcodes(r.get("dns", {}))
        if r.get("latency"):
            r["latency"] = summary(hdr(r["latency"]))
        s["resolvers"].append(r)
    if s.get("dns_late"):
        s["dns_late"] = summary(hdr(s["dns_late"]))
    s["journeys"] = []
    for j in m.get(4, []):
        j = named(j, JOURNEY)
        if j.get("latency"):
            j["latency"] = summary(hdr(j["latency"]))
        s["journeys"].append(j)
    return {k: v for k, v in s.items() if v not in ({}, [], None)}


def from_cbor(data):
    r = named(cbor2.loads(data), REPORT)
    if "capture" in r:
        r["capture"] = named(r["capture"], CAPTURE)
        if "evictions" in r["capture"]:
            r["capture"]["evictions"] = named(r["capture"]["evictions"], EVICTIONS)
    if r.get("agent") is not None:
        r["agent"] = named(r["agent"], AGENT)
    r["subscribers"] = [line(x) for x in r.get("subscribers", [])]
    return {k: v for k, v in r.items() if v is not None}


def summarized(value):
    """The JSON form with each histogram as its summary, read from its own bytes."""
    if isinstance(value, dict):
        if "hdr" in value:
            return summary(hdr(value["hdr"]))
        return {k: summarized(v) for k, v in value.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [summarized(v) for v in value]
    return value


def defaults_dropped(value):
    """Without fields that hold their default (0, "", empty): the contract reads a missing field
    as its default, and the two forms leave out different ones (JSON keeps capture zeros)."""
    if isinstance(value, dict):
        kept = {k: defaults_dropped(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (0, "", {}, [], None) or isinstance(v, bool)}
    if isinstance(value, list):
        return [defaults_dropped(v) for v in value]
    return value


def differences(a, b, path="report"):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}.{k}: only in the {'JSON' if k in b else 'CBOR'}"
            else:
                yield from differences(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: CBOR {a!r}, JSON {b!r}"


def main():
    paths = sys.argv[1:]
    if not paths or len(paths) % 2:
        sys.exit("usage: packed_decode.py REPORT.cbor REPORT.json [...]")
    found, histograms, lines, reports = [], 0, 0, 0
    for cbor_path, json_path in zip(paths[::2], paths[1::2]):
        with open(cbor_path, "rb") as f:
            ours = from_cbor(f.read())
        with open(json_path) as f:
            theirs = summarized(json.load(f))
        found += [f"{cbor_path}: {d}" for d in differences(defaults_dropped(ours), defaults_dropped(theirs))]
        histograms += json.dumps(ours).count('"p99"')
        lines += len(ours["subscribers"])
        reports += 1
    for d in found:
        print(d)
    print(f"{len(found)} differences; {reports} reports, {lines} lines, {histograms} histograms compared")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
