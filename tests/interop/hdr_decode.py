#!/usr/bin/env python3
"""Decodes every histogram of edgeprobe JSON reports (one per line on stdin) with the PyPI
`hdrhistogram` package and prints, per histogram, what Python reads from the bytes: total count,
min, max, and p50/p90/p99 taken as the value at rank ceil(q * count) over the decoded buckets (the
rule of HdrHistogram's Java and Rust libraries; the Python package's own percentile call rounds
the rank half up instead). One JSON object per histogram, in report order."""
import json
import math
import sys

from hdrh.histogram import HdrHistogram


def percentile(h, q):
    rank = max(1, math.ceil(q * h.get_total_count()))
    seen = 0
    for item in h.get_recorded_iterator():
        seen += item.count_at_value_iterated_to
        if seen >= rank:
            return h.get_highest_equivalent_value(item.value_iterated_to)
    return h.get_max_value()


def histograms(report):
    for s in report["subscribers"]:
        for name, hist in s.get("metrics", {}).items():
            yield [s["subscriber"], "", name], hist
        for svc in s.get("services", []):
            for name, hist in svc.get("metrics", {}).items():
                yield [s["subscriber"], svc["service"], name], hist
        for r in s.get("resolvers", []):
            if r.get("latency"):
                yield [s["subscriber"], "resolver " + r["resolver"], "dns"], r["latency"]
        for j in s.get("journeys", []):
            if j.get("latency"):
                yield [s["subscriber"], "journey " + j["journey"], "latency"], j["latency"]
        if s.get("dns_late"):
            yield [s["subscriber"], "", "dns_late"], s["dns_late"]


def main():
    for line in sys.stdin:
        report = json.loads(line)
        for path, hist in histograms(report):
            h = HdrHistogram.decode(hist["hdr"])
            print(json.dumps({"seq": report["seq"], "path": path, "count": h.get_total_count(),
                              "min": h.get_min_value(), "max": h.get_max_value(), "p50": percentile(h, 0.50),
                              "p90": percentile(h, 0.90), "p99": percentile(h, 0.99)}))


if __name__ == "__main__":
    main()
