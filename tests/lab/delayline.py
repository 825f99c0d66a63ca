#!/usr/bin/env python3
"""A userspace delay line: bridges two interfaces with raw AF_PACKET sockets and holds every frame
for a fixed time before passing it on. The lab kernel has no netem, so this is how a link gets a
known latency. With LOSS_PCT, that share of frames (chosen by a seeded generator, so a recording
can be made again) is dropped instead. Usage: delayline.py IF_A IF_B DELAY_MS [LOSS_PCT]
"""
import heapq
import random
import select
import socket
import sys
import time

PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003


def open_raw(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def main():
    if_a, if_b, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    delay = delay_ms / 1000.0
    loss = float(sys.argv[4]) / 100.0 if len(sys.argv) > 4 else 0.0
    chance = random.Random(7)
    a, b = open_raw(if_a), open_raw(if_b)
    peer = {a: b, b: a}
    queue = []  # (release time, sequence, output socket, frame)
    seq = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        ready, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions, seen again on the socket
                if loss and chance.random() < loss:
                    continue
                heapq.heappush(queue, (now + delay, seq, peer[s], frame))
                seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError:
                pass


if __name__ == "__main__":
    main()
