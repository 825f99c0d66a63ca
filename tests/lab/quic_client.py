#!/usr/bin/env python3
"""A QUIC client for the lab (aioquic from PyPI): for each connection given, connects, sends one
stream and reads the echo, then closes. Connections given together run in parallel.
Usage: quic_client.py HOST:PORT:SNI:OPTIONS ...  where OPTIONS is a '+'-joined list of
  v1, v2    the versions it offers, in its order of preference (default v1);
  from-v1   it starts in version 1 and lets the server choose a compatible one (RFC 9368);
  from-v2   it starts in version 2 (a server without it answers Version Negotiation).
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"v1": QuicProtocolVersion.VERSION_1, "v2": QuicProtocolVersion.VERSION_2}


async def one(spec):
    host, port, sni, options = spec.rsplit(":", 3)
    options = options.split("+")
    versions = [VERSIONS[o] for o in options if o in VERSIONS] or [QuicProtocolVersion.VERSION_1]
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3", "hq-interop"], server_name=sni,
                               verify_mode=ssl.CERT_NONE, supported_versions=versions)
    for o in options:
        if o.startswith("from-"):
            config.original_version = VERSIONS[o[5:]]
    try:
        async with connect(host.strip("[]"), int(port), configuration=config) as client:
            reader, writer = await client.create_stream()
            writer.write(b"edgeprobe lab " * 20)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 5)
    except Exception as e:  # a lossy run may give up; the capture still has what happened
        print(f"{spec}: {e!r}", file=sys.stderr)


async def main():
    await asyncio.gather(*(one(spec) for spec in sys.argv[1:]))


if __name__ == "__main__":
    asyncio.run(main())
