"""A sensor service over framed TCP with TLS, for devices that do not speak HTTP.

    safe-rpc keygen --out sensor-keys.json --audience sensors
    python -m examples.tcp_tls_service --keys sensor-keys.json --cert cert.pem --key key.pem
    python -m examples.tcp_client tls://127.0.0.1:9443 --ca ca.pem \\
        --token "$(safe-rpc token --keys sensor-keys.json --subject dev1 --scope sensors:write)"
"""

from __future__ import annotations

import argparse
import time

from pydantic import BaseModel, Field

from safe_rpc import Context, Keyring, RPCServer, serve

rpc = RPCServer()  # main() attaches the keyring from --keys


class Reading(BaseModel):
    sensor: str = Field(min_length=1, max_length=64)
    celsius: float = Field(ge=-100, le=200)


_latest: dict[str, Reading] = {}


@rpc.method(name="sensors.report", scopes=["sensors:write"])
def report(ctx: Context, reading: Reading) -> float:
    """Store a reading; returns the server time it was received."""
    _latest[reading.sensor] = reading
    return time.time()


@rpc.method(name="sensors.latest", scopes=["sensors:write"])
def latest(sensor: str) -> Reading | None:
    """The last reading of ``sensor``, if any."""
    return _latest.get(sensor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sensor service over TCP + TLS")
    parser.add_argument("--keys", required=True, help="key file (safe-rpc keygen)")
    parser.add_argument("--cert", required=True, help="TLS certificate (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--tcp", default="127.0.0.1:9443", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    rpc.keyring = Keyring.from_file(args.keys)
    serve(rpc, http=None, tcp=args.tcp, ssl_certfile=args.cert, ssl_keyfile=args.key)


if __name__ == "__main__":
    main()
