#!/usr/bin/env python3
"""A QUIC server for the lab (aioquic from PyPI): completes handshakes and echoes each stream.
Usage: quic_server.py CERT KEY HOST:PORT:OPTIONS ...  where OPTIONS is a '+'-joined list of
  v1, v2    the versions it takes, in its order of preference (default v1+v2);
  retry     it answers a first Initial with a Retry.
"""
import asyncio
import sys

from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

VERSIONS = {"v1": QuicProtocolVersion.VERSION_1, "v2": QuicProtocolVersion.VERSION_2}


async def echo(reader, writer):
    data = await reader.read(65536)
    writer.write(data)
    writer.write_eof()


async def main():
    cert, key, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    for spec in specs:
        host, port, options = spec.rsplit(":", 2)
        options = options.split("+")
        versions = [VERSIONS[o] for o in options if o in VERSIONS] or list(VERSIONS.values())
        config = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"], supported_versions=versions)
        config.load_cert_chain(cert, key)
        await serve(host.strip("[]"), int(port), configuration=config, retry="retry" in options,
                    stream_handler=lambda r, w: asyncio.ensure_future(echo(r, w)))
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
