#!/usr/bin/env python3
"""Writes tshark's answers for a capture as TSV tables beside the fixtures, so tests can check
edgeprobe's events without tshark at run time. Usage: answers.py CAPTURE OUT_DIR

Tables (times in seconds, *_ms in milliseconds with three decimals):
  NAME.dns.tsv       each DNS query, the response tshark matched to it (dns.response_in), latency
  NAME.tcp_hs.tsv    each TCP stream with a SYN: SYN count, first SYN, first SYN/ACK, client ACK
  NAME.tcp_anal.tsv  each TCP stream: packets and payload bytes per direction, tshark's flags
"""
import collections
import os
import subprocess
import sys
from decimal import Decimal


def fields(capture, display_filter, names):
    """Two passes, so a query knows its response; headers quoted inside ICMP errors are left out."""
    cmd = ["tshark", "-2", "-n", "-r", capture, "-Y", display_filter, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=f"]
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


if __name__ == "__main__":
    main()
