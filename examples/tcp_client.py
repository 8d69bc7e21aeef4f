"""Report a reading to the sensor service and read it back (see tcp_tls_service.py)."""

from __future__ import annotations

import argparse
import asyncio
import ssl

from safe_rpc import AsyncClient


async def run(url: str, token: str, ca: str | None) -> None:
    context = ssl.create_default_context(cafile=ca) if ca else None
    async with AsyncClient(url, token=token, ssl=context, timeout=5.0) as client:
        received = await client.sensors.report(reading={"sensor": "kitchen", "celsius": 21.5})
        latest = await client.sensors.latest(sensor="kitchen")
        print(f"reported at {received:.0f}; latest: {latest}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sensor client over TCP + TLS")
    parser.add_argument("url", help="e.g. tls://127.0.0.1:9443")
    parser.add_argument("--token", required=True, help="bearer token with sensors:write")
    parser.add_argument("--ca", help="CA certificate to trust (PEM)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.url, args.token, args.ca))


if __name__ == "__main__":
    main()
