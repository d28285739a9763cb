"""scripts/dev_certs.py, run for real: the files and their modes, the certificates, the tokens (printed
once, stored as digests), no silent overwrite, and a TLS + tokens server (then mutual TLS) started from
what it wrote and called over TLS with raw grpc and with the SDK, as its printed usage says."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from streamstats import Client, ClientConfig, TLSConfig
from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "dev_certs.py"
FILES = {"ca.pem", "server.pem", "server.key", "client.pem", "client.key", "tokens.toml"}
PRIVATE = {"server.key", "client.key", "tokens.toml"}
SCOPES = {"admin": ["admin", "read", "write"], "ingest": ["write"], "dashboards": ["read"]}
TOKEN_LINE = re.compile(r"^\s+(\w+)\s+(\S+)\s+scopes: (.+)$", re.MULTILINE)
T = 10.0


def run_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


@dataclass(frozen=True)
class Made:
    folder: Path
    stdout: str
    tokens: dict[str, str]  # name -> token, as printed

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.read(name))


def printed_tokens(stdout: str) -> dict[str, str]:
    return {name: token for name, token, _ in TOKEN_LINE.findall(stdout)}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    folder = tmp_path_factory.mktemp("dev") / "secrets"  # does not exist yet: the script creates it
    done = run_script("--out", str(folder))
    assert done.returncode == 0, done.stderr
    return Made(folder, done.stdout, printed_tokens(done.stdout))


@pytest.fixture
def storage_mode() -> str:
    return "memory"  # nothing here depends on storage


def test_it_writes_the_files_keys_and_tokens_private(made: Made) -> None:
    assert stat.S_IMODE(made.folder.stat().st_mode) == 0o700
    assert {p.name for p in made.folder.iterdir()} == FILES  # no temporary files left behind
    for name in FILES:
        mode = stat.S_IMODE((made.folder / name).stat().st_mode)
        assert mode == (0o600 if name in PRIVATE else 0o644), (name, oct(mode))
    # The CA's private key is nowhere: only the two leaf keys are private keys.
    holding_keys = {name for name in FILES if b"PRIVATE KEY" in made.read(name)}
    assert holding_keys == {"server.key", "client.key"}


def test_the_certificates(made: Made) -> None:
    ca, server, client = made.cert("ca.pem"), made.cert("server.pem"), made.cert("client.pem")
    now = datetime.datetime.now(datetime.UTC)
    for cert in (ca, server, client):
        assert cert.not_valid_before_utc <= now
        lifetime = cert.not_valid_after_utc - now
        assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=365), lifetime
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    ca.verify_directly_issued_by(ca)
    for cert in (server, client):
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "server", "server-secure"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    # Each certificate does one job: a server's cannot authenticate a client, nor the reverse.
    usages = {
        name: list(made.cert(name).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        for name in ("server.pem", "client.pem")
    }
    assert usages == {
        "server.pem": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client.pem": [ExtendedKeyUsageOID.CLIENT_AUTH],
    }


def test_the_tokens_are_printed_once_and_only_their_digests_stored(made: Made) -> None:
    assert set(made.tokens) == set(SCOPES)
    assert len(set(made.tokens.values())) == 3
    for token in made.tokens.values():
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), token  # secrets.token_urlsafe(32)
    stored = made.read("tokens.toml").decode()
    assert not any(token in stored for token in made.tokens.values())
    entries = tomllib.loads(stored)["token"]
    assert {e["name"]: e["scopes"] for e in entries} == SCOPES
    assert {e["name"]: e["sha256"] for e in entries} == {
        name: hashlib.sha256(token.encode()).hexdigest() for name, token in made.tokens.items()
    }
    assert all(set(e) == {"name", "sha256", "scopes"} for e in entries)
    # How to use them: the CLI's variable, the SDK's config, the compose profile, the validity.
    for needed in (
        "STREAMSTATS_TOKEN=",
        "STREAMSTATS_CA=",
        "ClientConfig(token=",
        "TLSConfig(ca_file=",
        "--profile secure",
        "valid until",
        "shown only now",
    ):
        assert needed in made.stdout, needed


def test_it_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = run_script("--out", str(folder))
    assert first.returncode == 0, first.stderr
    before = {name: (folder / name).read_bytes() for name in FILES}
    again = run_script("--out", str(folder))
    assert again.returncode == 1 and again.stdout == ""  # no new tokens shown for files not written
    assert "--force" in again.stderr and "tokens.toml" in again.stderr
    assert {name: (folder / name).read_bytes() for name in FILES} == before
    # One file of the set is enough to refuse (the others could belong with it).
    for name in FILES - {"tokens.toml"}:
        (folder / name).unlink()
    assert run_script("--out", str(folder)).returncode == 1
    assert {p.name for p in folder.iterdir()} == {"tokens.toml"}
    forced = run_script("--out", str(folder), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "tokens.toml").read_bytes() != before["tokens.toml"]
    assert (folder / "ca.pem").read_bytes() != before["ca.pem"]
    assert printed_tokens(forced.stdout).keys() == SCOPES.keys()


def test_days_extra_names_and_the_default_folder(tmp_path: Path) -> None:
    done = run_script(
        "--out", "s", "--days", "30", "--san", "my-laptop.lan", "--san", "10.1.2.3", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "STREAMSTATS_CA=s/ca.pem" in done.stdout  # as typed from where it ran
    server = x509.load_pem_x509_certificate((tmp_path / "s" / "server.pem").read_bytes())
    lifetime = server.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "my-laptop.lan" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    assert run_script("--out", str(tmp_path / "t"), "--days", "0").returncode == 2
    # Without --out: ./secrets next to docker-compose.yml, wherever it runs from (what compose mounts).
    usage = run_script("--help")
    assert str(ROOT / "secrets") in " ".join(usage.stdout.split())


# -- what it wrote, used by a real server ------------------------------------------------------------


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert isinstance(info.value, grpc.Call)
    return info.value.code()


@pytest.fixture
def tls_stub(server_factory: ServerFactory, made: Made) -> Iterator[pb_grpc.StreamStatsStub]:
    address = server_factory(
        tls_cert=made.path("server.pem"),
        tls_key=made.path("server.key"),
        auth_tokens=made.path("tokens.toml"),
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=made.read("ca.pem"))
    with grpc.secure_channel(address, credentials) as channel:
        yield pb_grpc.StreamStatsStub(channel)


def test_a_tls_and_tokens_server_from_its_files(tls_stub: pb_grpc.StreamStatsStub, made: Made) -> None:
    admin, ingest, dashboards = (bearer(made.tokens[n]) for n in ("admin", "ingest", "dashboards"))
    tls_stub.CreateStream(pb.CreateStreamRequest(name="api-latency"), timeout=T, metadata=admin)
    for value in (3.0, 1.0, 2.0):
        tls_stub.AddNum(pb.AddNumRequest(stream="api-latency", value=value), timeout=T, metadata=ingest)
    median = tls_stub.FindMedian(pb.FindMedianRequest(stream="api-latency"), timeout=T, metadata=dashboards)
    assert (median.median, median.count) == (2.0, 3)
    # The scopes it gave them, and no way in without a token.
    add = pb.AddNumRequest(stream="api-latency", value=4.0)
    assert (
        code_of(lambda: tls_stub.AddNum(add, timeout=T, metadata=dashboards))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    create = pb.CreateStreamRequest(name="other")
    assert code_of(lambda: tls_stub.CreateStream(create, timeout=T, metadata=ingest)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert code_of(lambda: tls_stub.AddNum(add, timeout=T)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = bearer(made.tokens["admin"][:-1] + "x")
    assert code_of(lambda: tls_stub.AddNum(add, timeout=T, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED


def test_the_sdk_as_its_usage_says(server_factory: ServerFactory, made: Made) -> None:
    address = server_factory(
        tls_cert=made.path("server.pem"),
        tls_key=made.path("server.key"),
        auth_tokens=made.path("tokens.toml"),
    )
    port = address.rsplit(":", 1)[1]
    for server_name in (None, "localhost", "server-secure"):  # the names the certificate is for
        tls = TLSConfig(ca_file=made.path("ca.pem"), server_name=server_name)
        config = ClientConfig(token=made.tokens["ingest"], tls=tls, timeout=T, read_retries=0)
        with Client(f"127.0.0.1:{port}", config=config) as client:
            assert client.add("api-sdk", 1.5).count >= 1


def test_mutual_tls_with_its_client_certificate(server_factory: ServerFactory, made: Made) -> None:
    address = server_factory(
        tls_cert=made.path("server.pem"),
        tls_key=made.path("server.key"),
        tls_client_ca=made.path("ca.pem"),
        auth_tokens=made.path("tokens.toml"),
    )
    request = pb.AddNumRequest(stream="api-mtls", value=1.0)
    writer = bearer(made.tokens["ingest"])

    def add_with(cert: str | None, key: str | None) -> pb.AddNumResponse:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=made.read("ca.pem"),
            private_key=made.read(key) if key else None,
            certificate_chain=made.read(cert) if cert else None,
        )
        with grpc.secure_channel(address, credentials) as channel:
            response: pb.AddNumResponse = pb_grpc.StreamStatsStub(channel).AddNum(
                request, timeout=T, metadata=writer
            )
            return response

    assert add_with("client.pem", "client.key").count == 1
    assert code_of(lambda: add_with(None, None)) == grpc.StatusCode.UNAVAILABLE
    # The server's certificate is not a client's (its extended key usage is serverAuth only).
    assert code_of(lambda: add_with("server.pem", "server.key")) == grpc.StatusCode.UNAVAILABLE
