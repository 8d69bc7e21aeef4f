"""Client and CLI errors name their cause: refused connections, TLS verification,
a tcp:// URL at an HTTP port, a key file given as a token file, --ca."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from servers import REPO_ROOT, cli, serve

from safe_rpc import AsyncClient, Client, InvalidResponse, Keyring, TransportError


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file, ca_file


@pytest.fixture(scope="module")
def tls_server(tls_files: tuple[Path, Path, Path]) -> Iterator[int]:
    cert, key, _ = tls_files
    with serve("ops_app:rpc", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)) as server:
        yield server.port


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_connection_refused_names_host_and_port(scheme: str, closed_port: int) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port}/"
    refused = f"connection refused to 127.0.0.1:{closed_port}$"
    with pytest.raises(TransportError, match=refused), Client(url) as client:
        client.add(1, 2)

    async def call() -> None:
        async with AsyncClient(url) as client:
            await client.add(1, 2)

    with pytest.raises(TransportError, match=refused):
        asyncio.run(call())


def test_unknown_ca_says_tls_verification_failed(tls_server: int) -> None:
    url = f"https://127.0.0.1:{tls_server}/"
    with (
        pytest.raises(TransportError, match=r"^TLS verification failed: .*certificate"),
        Client(url) as client,
    ):
        client.add(1, 2)
    result = cli("call", f"https://127.0.0.1:{tls_server}/", "add", "1", "2")
    assert result.returncode == 3
    assert "TLS verification failed" in result.stderr


def test_call_ca_flag_trusts_the_given_ca(tls_server: int, tls_files: tuple[Path, ...]) -> None:
    result = cli(
        "call", f"https://127.0.0.1:{tls_server}/", "add", "1", "2", "--ca", str(tls_files[2])
    )
    assert (result.returncode, result.stdout.strip()) == (0, "3"), result.stderr
    missing = cli("call", f"https://127.0.0.1:{tls_server}/", "add", "1", "--ca", "/no/ca.pem")
    assert missing.returncode == 2
    assert "cannot read the CA file /no/ca.pem" in missing.stderr
    not_pem = cli(
        "call", f"https://127.0.0.1:{tls_server}/", "add", "1", "--ca", str(REPO_ROOT / "README.md")
    )
    assert not_pem.returncode == 2
    assert "is not a PEM CA certificate" in not_pem.stderr


def test_tcp_url_at_an_http_port_says_so() -> None:
    with serve("ops_app:rpc") as server:
        url = f"tcp://127.0.0.1:{server.port}"
        with pytest.raises(InvalidResponse, match="is this an HTTP port"), Client(url) as client:
            client.add(1, 2)

        async def call() -> None:
            async with AsyncClient(url, timeout=5) as client:
                await client.add(1, 2)

        with pytest.raises(TransportError, match="is this an HTTP port"):
            asyncio.run(call())
        with Client(server.url) as client:  # the server still serves
            assert client.add(1, 2) == 3


def test_key_file_as_token_file_is_named(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    Keyring.generate(audience="ops").to_file(keys)
    result = cli("call", "http://127.0.0.1:1/", "add", "1", "2", "--token-file", str(keys))
    assert result.returncode == 2
    assert f"{keys} is not a token file" in result.stderr
    assert "this is a key file" in result.stderr
    assert "LocalProtocolError" not in result.stderr


def test_token_with_a_key_file_that_is_not_one_says_not_a_key_file(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# hello\n")
    readme.chmod(0o644)  # readable by others: the content is judged first
    result = cli("token", "--keys", str(readme), "--subject", "me")
    assert result.returncode == 2
    assert f"{readme} is not a key file" in result.stderr
    assert "chmod" not in result.stderr


def test_tls_handshake_with_plain_server_names_the_address() -> None:
    with serve("ops_app:rpc") as server:
        context = ssl.create_default_context()
        url = f"https://127.0.0.1:{server.port}/"
        with (
            pytest.raises(TransportError, match=f"127.0.0.1:{server.port}"),
            Client(url, ssl=context) as client,
        ):
            client.add(1, 2)
