"""TLS, mutual TLS and bearer tokens from the SDK's side, against real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamstats
from streamstats import Client, ClientConfig, TLSConfig
from tests.conftest import ServerFactory
from tests.e2e.pki import Pki, make_pki

TOKEN = "sdk-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def storage_mode() -> str:
    return "memory"


@pytest.fixture
def tls_address(server_factory: ServerFactory, pki: Pki) -> str:
    return server_factory(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))


@pytest.fixture
def mtls_address(server_factory: ServerFactory, pki: Pki) -> str:
    return server_factory(
        tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), tls_client_ca=str(pki.ca)
    )


def client(address: str, **config: object) -> Client:
    return Client(address, config=ClientConfig(timeout=5.0, read_retries=0, **config))  # type: ignore[arg-type]


def test_tls_with_the_servers_ca(tls_address: str, pki: Pki) -> None:
    with client(tls_address, tls=TLSConfig(ca_file=str(pki.ca))) as c:
        c.add("t", 1.0)
        assert c.median("t") == 1.0


def test_tls_checks_the_certificate(tls_address: str, pki: Pki) -> None:
    with (
        client(tls_address, tls=TLSConfig(ca_file=str(pki.other_ca))) as c,
        pytest.raises(streamstats.Unavailable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        c.add("t", 1.0)
    # A plaintext client cannot talk to a TLS server; grpc only says "Socket closed", the SDK says why.
    with client(tls_address) as plaintext, pytest.raises(streamstats.Unavailable, match="require TLS"):
        plaintext.add("t", 1.0)


def test_tls_server_name_override(tls_address: str, pki: Pki) -> None:
    port = tls_address.rsplit(":", 1)[1]
    with client(f"127.0.0.1:{port}", tls=TLSConfig(ca_file=str(pki.ca), server_name="localhost")) as c:
        assert c.add("n", 2.0).count == 1
    # The name really is what gets checked: the certificate is not for this one.
    other_name = TLSConfig(ca_file=str(pki.ca), server_name="not-the-server.test")
    with client(f"127.0.0.1:{port}", tls=other_name) as c, pytest.raises(streamstats.Unavailable):
        c.add("n", 2.0)


def test_mutual_tls(mtls_address: str, pki: Pki) -> None:
    both = TLSConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    with client(mtls_address, tls=both) as c:
        assert c.add("m", 3.0).count == 1
    with (
        client(mtls_address, tls=TLSConfig(ca_file=str(pki.ca))) as anonymous,
        pytest.raises(streamstats.Unavailable, match="client certificate"),
    ):
        anonymous.add("m", 3.0)


async def test_mutual_tls_async(mtls_address: str, pki: Pki) -> None:
    both = TLSConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    async with streamstats.AsyncClient(mtls_address, config=ClientConfig(tls=both)) as c:
        assert (await c.add("ma", 1.0)).count == 1


def test_tls_config_is_checked(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        TLSConfig(cert_file=str(pki.client_cert))
    missing = tmp_path / "nope.pem"
    config = ClientConfig(tls=TLSConfig(ca_file=str(pki.ca), cert_file=str(missing), key_file=str(pki.ca)))
    # Both clients read the files when they are made (the async one before it has a loop or a channel).
    for make in (Client, streamstats.AsyncClient):
        with pytest.raises(ValueError, match=f"TLSConfig.cert_file: cannot read {missing}: No such file"):
            make("127.0.0.1:1", config=config)


@pytest.fixture
def token_address(server_factory: ServerFactory, tmp_path: Path) -> str:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[[token]]\nname = "sdk"\nsecret = "{TOKEN}"\n'
        'scopes = ["read", "write", "admin"]\nprefixes = ["ok-"]\n'
    )
    return server_factory(auth_tokens=str(tokens))


def test_tokens(token_address: str) -> None:
    with client(token_address, token=TOKEN) as c:
        c.add("ok-1", 1.0)
        assert c.stats("ok-1").count == 1
        assert [s.name for s in c.list_streams()] == ["ok-1"]
        with pytest.raises(streamstats.PermissionDenied, match="may not touch stream 'other'") as denied:
            c.add("other", 1.0)
        assert TOKEN not in str(denied.value) and TOKEN not in repr(denied.value)
    with (
        client(token_address) as anonymous,
        pytest.raises(streamstats.Unauthenticated, match="requires a token"),
    ):
        anonymous.add("ok-1", 1.0)
    with client(token_address, token="wrong-token-0123456789") as wrong:
        with pytest.raises(streamstats.Unauthenticated) as info:
            wrong.median("ok-1")
        assert "wrong-token" not in str(info.value)


async def test_tokens_async(token_address: str) -> None:
    async with streamstats.AsyncClient(token_address, config=ClientConfig(token=TOKEN)) as c:
        await c.add("ok-a", 1.0)
        async with c.watch("ok-a", min_interval=0.05) as updates:
            assert (await anext(updates)).stats.count == 1


def test_the_token_never_shows(pki: Pki) -> None:
    config = ClientConfig(token=TOKEN, tls=TLSConfig(ca_file=str(pki.ca)))
    assert TOKEN not in repr(config)
    assert TOKEN not in repr(Client("127.0.0.1:1", config=config))
    with pytest.raises(ValueError, match="without spaces"):
        ClientConfig(token="has space")
