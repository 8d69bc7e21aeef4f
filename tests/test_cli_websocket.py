"""`safe-rpc serve` serves WebSocket beside HTTP by default (ws://, and wss:// with the
same TLS flags); `--no-websocket` turns it off; `--allow-origin` allows a browser origin."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest
import trustme
from servers import serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin
from ws_support import handshake

from safe_rpc import Client

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import ws_app


def test_serve_websocket_by_default_and_allow_origin() -> None:
    """The HTTP port answers WebSocket; an allowed Origin gets in, another does not."""
    with serve("ws_app:rpc", "--allow-origin", "https://app.example") as running:
        with Client(f"ws://127.0.0.1:{running.port}/", token=ws_app.token()) as c:
            assert c.whoami() == "alice via websocket"
            with c.subscribe("countdown", 2) as sub:
                assert list(sub) == [2, 1]
        with connect(f"ws://127.0.0.1:{running.port}/", origin=Origin("https://app.example")) as ws:
            ws.send('{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}')
            assert '"code":-32001' in str(ws.recv(timeout=5))  # authenticate first
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{running.port}/", origin=Origin("https://evil.example"))


def test_serve_no_websocket() -> None:
    """`--no-websocket`: the engine does not upgrade (the app sees a plain GET: 405)."""
    with serve("ws_app:rpc", "--no-websocket") as running:
        status, sock = handshake(running.port)
        sock.close()
        assert status == 405
        with Client(running.url) as c:
            assert c.add(2, 3) == 5


def test_serve_wss_with_the_tls_flags(tmp_path: Path) -> None:
    """With --ssl-certfile/--ssl-keyfile the same port serves wss:// to a verifying client."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = [
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
    ]
    with serve("ws_app:rpc", *args) as running:
        url = f"wss://localhost:{running.port}/"
        with Client(url, token=ws_app.token(), ssl=context) as c:
            assert c.whoami() == "alice via websocket"
