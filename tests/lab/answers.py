#!/usr/bin/env python3
"""Writes tshark's answers for a capture as TSV tables beside the fixtures, so tests can check
edgeprobe's events without tshark at run time. Usage: answers.py CAPTURE OUT_DIR

Tables (times in seconds, *_ms in milliseconds with three decimals):
  NAME.dns.tsv       each DNS query, the response tshark matched to it (dns.response_in), latency
  NAME.tcp_hs.tsv    each TCP stream with a SYN: SYN count, first SYN, first SYN/ACK, client ACK
  NAME.tcp_anal.tsv  each TCP stream: packets and payload bytes per direction, tshark's flags
  NAME.tls.tsv       each TLS handshake: SNI, ALPN, version, ClientHello, ServerHello (not a
                     HelloRetryRequest), the client's first application_data record, alerts
  NAME.http.tsv      each HTTP request with its final (non-1xx) response, timed at the frames that
                     complete their header blocks (body reassembly off, as the public references'
                     http.time is defined)
"""
import collections
import os
import subprocess
import sys
from decimal import Decimal


def fields(capture, display_filter, names, options=(), occurrence="f"):
    """Two passes, so a query knows its response; headers quoted inside ICMP errors are left out."""
    cmd = ["tshark", "-2", "-n", "-r", capture, "-Y", display_filter, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=" + occurrence, "-E", "aggregator=|"] + list(options)
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [dict(zip(names, line.split("\t"))) for line in out.splitlines()]


def millis(a, b):
    return "%.3f" % ((b - a) * 1000)


def src_dst(r):
    return (r["ip.src"] or r["ipv6.src"], r["ip.dst"] or r["ipv6.dst"])


def write(out_dir, name, kind, header, rows):
    with open(os.path.join(out_dir, "%s.%s.tsv" % (name, kind)), "w") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")


def dns(capture):
    names = ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
             "dns.id", "dns.flags.response", "dns.qry.name", "dns.qry.type", "dns.flags.rcode",
             "dns.response_in"]
    rows = fields(capture, "dns && !icmp && !icmpv6", names)
    frames = {r["frame.number"]: r for r in rows}
    table = []
    for r in rows:
        if r["dns.flags.response"] not in ("0", "False"):
            continue
        client, server = src_dst(r)
        resp = frames.get(r["dns.response_in"])
        t_q = Decimal(r["frame.time_epoch"])
        answer = [resp["frame.number"], resp["dns.flags.rcode"], millis(t_q, Decimal(resp["frame.time_epoch"]))] \
            if resp else ["", "", ""]
        table.append([r["frame.number"], r["frame.time_epoch"], client, server, "tcp" if r["tcp.srcport"] else "udp",
                      r["dns.id"], r["dns.qry.name"], r["dns.qry.type"]] + answer)
    return ["q_frame", "q_time", "client", "server", "proto", "id", "qname", "qtype", "r_frame", "rcode",
            "latency_ms"], table


def tcp(capture):
    flags = ["retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order", "zero_window",
             "duplicate_ack", "keep_alive"]
    names = ["frame.time_epoch", "tcp.stream", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
             "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.len", "tcp.analysis.initial_rtt"] + \
            ["tcp.analysis." + f for f in flags]
    streams = collections.OrderedDict()
    for r in fields(capture, "tcp && !icmp && !icmpv6", names):
        src, dst = src_dst(r)
        me, peer = (src, r["tcp.srcport"]), (dst, r["tcp.dstport"])
        t = Decimal(r["frame.time_epoch"])
        s = streams.setdefault(r["tcp.stream"], {"first": me, "client": None, "syns": 0, "syn": None,
                                                 "last_syn": None, "synack": None, "ack": None, "irtt": "",
                                                 "pkts": collections.Counter(), "bytes": collections.Counter(),
                                                 "flags": collections.Counter(), "ends": (me, peer)})
        syn, ack = r["tcp.flags.syn"] in ("1", "True"), r["tcp.flags.ack"] in ("1", "True")
        if syn and not ack:
            s["syns"] += 1
            s["client"] = s["client"] or me
            s["syn"] = s["syn"] or t
            if s["synack"] is None:
                s["last_syn"] = t
        elif syn and ack:
            s["client"] = s["client"] or peer
            s["synack"] = s["synack"] or t
        elif ack and s["synack"] is not None and s["ack"] is None and me == s["client"]:
            s["ack"] = t
        s["irtt"] = s["irtt"] or r["tcp.analysis.initial_rtt"]
        client = s["client"] or s["first"]
        way = "c2s" if me == client else "s2c"
        s["pkts"][way] += 1
        s["bytes"][way] += int(r["tcp.len"] or 0)
        for f in flags:
            if r["tcp.analysis." + f]:
                s["flags"][f] += 1
    hs, anal = [], []
    for n, s in streams.items():
        client = s["client"] or s["first"]
        server = s["ends"][1] if s["ends"][0] == client else s["ends"][0]
        ends = ["%s:%s" % client, "%s:%s" % server]
        if s["syns"]:
            done = s["ack"] is not None
            hs.append([n] + ends + [s["syns"], s["syn"], s["synack"] or "", s["ack"] or "",
                                    millis(s["syn"], s["ack"]) if done else "",
                                    millis(s["synack"], s["ack"]) if done else "",
                                    millis(s["last_syn"], s["ack"]) if done else "",
                                    "%.3f" % (float(s["irtt"]) * 1000) if s["irtt"] else ""])
        anal.append([n] + ends + [s["pkts"]["c2s"], s["pkts"]["s2c"], s["bytes"]["c2s"], s["bytes"]["s2c"]] +
                    [s["flags"][f] for f in flags])
    return (["stream", "client", "server", "n_syn", "t_syn_first", "t_synack_first", "t_ack",
             "handshake_rtt_ms(first SYN->ACK)", "synack_to_ack_ms", "rtt_from_last_syn_ms", "tshark_initial_rtt_ms"],
            hs), (["stream", "client", "server", "pkts_c2s", "pkts_s2c", "payload_bytes_c2s", "payload_bytes_s2c"] +
                  flags, anal)


HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
VERSIONS = {"0x0304": "TLS1.3", "0x0303": "TLS1.2", "0x0302": "TLS1.1", "0x0301": "TLS1.0"}


def tls(capture):
    # TLS 1.3 hides the real content type: encrypted records carry opaque_type 23.
    names = ["frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "tls.record.content_type",
             "tls.record.opaque_type",
             "tls.handshake.type", "tls.handshake.random", "tls.handshake.extensions_server_name",
             "tls.handshake.extensions_alpn_str", "tls.handshake.version",
             "tls.handshake.extensions.supported_version", "tls.alert_message.desc"]
    sessions = collections.OrderedDict()
    for r in fields(capture, "tls && !icmp && !icmpv6", names, occurrence="a"):
        t = Decimal(r["frame.time_epoch"])
        sender = ((r["ip.src"] or r["ipv6.src"]), r["tcp.srcport"])
        types = r["tls.handshake.type"].split("|") if r["tls.handshake.type"] else []
        contents = "|".join([r["tls.record.content_type"], r["tls.record.opaque_type"]]).split("|")
        s = sessions.setdefault(r["tcp.stream"], {"client": None, "ch": None, "sh": None, "data": None,
                                                  "sni": "", "alpn": "", "version": "", "alerts": ""})
        if "1" in types and s["ch"] is None:
            s.update(client=sender, ch=t, sni=r["tls.handshake.extensions_server_name"].split("|")[0],
                     alpn=r["tls.handshake.extensions_alpn_str"].replace("|", ","))
        if "2" in types and s["sh"] is None and sender != s["client"]:
            randoms = r["tls.handshake.random"].split("|")
            if HRR_RANDOM not in [x.replace(":", "") for x in randoms]:
                s["sh"] = t
                sv = [v for v in r["tls.handshake.extensions.supported_version"].split("|") if v]
                hv = [v for v in r["tls.handshake.version"].split("|") if v]
                s["version"] = VERSIONS.get(sv[-1] if sv else hv[-1] if hv else "", "")
        if r["tls.alert_message.desc"] and s["data"] is None:
            s["alerts"] = r["tls.alert_message.desc"]
        if sender == s["client"] and s["sh"] is not None and s["data"] is None and "23" in contents:
            s["data"] = t
    rows = []
    for n, s in sessions.items():
        if s["ch"] is None:
            continue
        done = s["data"] if not s["alerts"] else None
        rows.append([n, "%s:%s" % s["client"], s["sni"], s["alpn"], s["version"], s["ch"], s["sh"] or "",
                     done or "", millis(s["ch"], s["sh"]) if s["sh"] else "",
                     millis(s["ch"], done) if done else "", s["alerts"]])
    return ["stream", "client", "sni", "alpn_offered", "negotiated_version", "t_client_hello", "t_server_hello",
            "t_client_finished_approx", "ch_to_sh_ms", "ch_to_client_finished_ms", "alerts"], rows


def http(capture):
    names = ["frame.time_epoch", "tcp.stream", "http.request.method", "http.host", "http.response.code"]
    options = ["-o", "http.desegment_body:FALSE"]
    waiting = collections.defaultdict(collections.deque)
    rows = []
    for r in fields(capture, "http && !icmp && !icmpv6", names, options, occurrence="a"):
        t = Decimal(r["frame.time_epoch"])
        stream = waiting[r["tcp.stream"]]
        methods = [m for m in r["http.request.method"].split("|") if m]
        hosts = r["http.host"].split("|") if r["http.host"] else []
        for i, method in enumerate(methods):
            stream.append((method, hosts[i] if i < len(hosts) else "", t))
        for code in [c for c in r["http.response.code"].split("|") if c]:
            if 100 <= int(code) < 200 and code != "101":
                continue  # interim: the request waits for its final response
            if stream:
                method, host, t_req = stream.popleft()
                rows.append([r["tcp.stream"], method, host, code, millis(t_req, t)])
    return ["stream", "method", "host", "status", "http.time_ms(no body reassembly)"], rows


def main():
    capture, out_dir = sys.argv[1], sys.argv[2]
    name = os.path.basename(capture)
    header, rows = dns(capture)
    if rows:
        write(out_dir, name, "dns", header, rows)
    (hs_header, hs), (anal_header, anal) = tcp(capture)
    if hs:
        write(out_dir, name, "tcp_hs", hs_header, hs)
    if anal:
        write(out_dir, name, "tcp_anal", anal_header, anal)
    for kind, table in (("tls", tls), ("http", http)):
        header, rows = table(capture)
        if rows:
            write(out_dir, name, kind, header, rows)


if __name__ == "__main__":
    main()
