"""Bearer tokens with scopes and prefixes, and the refusal to listen openly, through raw stubs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamstats.v1 import streamstats_pb2 as pb
from streamstats.v1 import streamstats_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.e2e.calls import error_of
from tests.e2e.program import program_environment

T = 10.0
ADMIN = "admin-secret-0123456789"
WRITER = "writer-secret-0123456789"
READER = "reader-secret-0123456789"
HASHED = "hashed-secret-0123456789"

TOKENS = f"""
[[token]]
name = "ops"
secret = "{ADMIN}"
scopes = ["admin", "read", "write"]

[[token]]
name = "ingest"
secret = "{WRITER}"
scopes = ["write"]
prefixes = ["api-"]

[[token]]
name = "dashboards"
secret = "{READER}"
scopes = ["read"]
prefixes = ["web-", "api-"]

[[token]]
name = "hashed"
sha256 = "{hashlib.sha256(HASHED.encode()).hexdigest()}"
scopes = ["read"]
"""


@pytest.fixture
def storage_mode() -> str:
    return "memory"  # nothing here depends on storage


@pytest.fixture
def address(server_factory: ServerFactory, tmp_path: Path) -> str:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    return server_factory(auth_tokens=str(tokens))


@pytest.fixture
def channel(address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(address) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.StreamStatsStub:
    return pb_grpc.StreamStatsStub(channel)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def code_and_details(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    err = error_of(call)
    return err.code(), err.details() or ""


SERVICE = pb.DESCRIPTOR.services_by_name["StreamStats"]


def call_every_rpc(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]
) -> dict[str, grpc.StatusCode]:
    """Each RPC with an empty request (a stream of one for streaming requests): name -> status."""
    codes = {}
    for method in SERVICE.methods:
        path = f"/{SERVICE.full_name}/{method.name}"
        request = (
            getattr(pb, method.input_type.name)(stream="api-x")
            if method.input_type.name.startswith(("Add", "Find", "Top", "Bottom"))
            else getattr(pb, method.input_type.name)()
        )
        kinds = (method.client_streaming, method.server_streaming)
        serialize = type(request).SerializeToString
        parse = getattr(pb, method.output_type.name).FromString
        try:
            if kinds == (False, False):
                channel.unary_unary(path, serialize, parse)(request, timeout=T, metadata=metadata)
            elif kinds == (True, False):
                channel.stream_unary(path, serialize, parse)(iter([request]), timeout=T, metadata=metadata)
            elif kinds == (False, True):
                list(channel.unary_stream(path, serialize, parse)(request, timeout=T, metadata=metadata))
            else:
                list(
                    channel.stream_stream(path, serialize, parse)(
                        iter([request]), timeout=T, metadata=metadata
                    )
                )
            codes[method.name] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            codes[method.name] = exc.code()  # every RpcError a call raises is also a grpc.Call
    return codes


def test_every_rpc_needs_a_token_unary_and_streaming_alike(channel: grpc.Channel) -> None:
    assert set(call_every_rpc(channel, ()).values()) == {grpc.StatusCode.UNAUTHENTICATED}
    assert set(call_every_rpc(channel, bearer("not-a-token-we-know-of")).values()) == {
        grpc.StatusCode.UNAUTHENTICATED
    }
    # A known token gets past authentication everywhere (whatever its scopes then allow).
    assert grpc.StatusCode.UNAUTHENTICATED not in call_every_rpc(channel, bearer(ADMIN)).values()


def test_rejections_say_what_to_send_and_never_echo_the_token(stub: pb_grpc.StreamStatsStub) -> None:
    request = pb.FindMedianRequest(stream="api-x")
    code, message = code_and_details(lambda: stub.FindMedian(request, timeout=T))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in message
    guess = "guess-0123456789-guess"
    code, message = code_and_details(lambda: stub.FindMedian(request, timeout=T, metadata=bearer(guess)))
    assert (code, message) == (grpc.StatusCode.UNAUTHENTICATED, "unknown token")
    for header in ("Basic dXNlcjpwYXNz", "Bearer", f"Bearer {READER} extra", READER):
        metadata = (("authorization", header),)
        code, message = code_and_details(
            lambda metadata=metadata: stub.FindMedian(request, timeout=T, metadata=metadata)  # type: ignore[misc]
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED, header
        assert READER not in message
    # A known token outside its scope: the message names the token, never its secret.
    code, message = code_and_details(
        lambda: stub.AddNum(pb.AddNumRequest(stream="api-x", value=1), timeout=T, metadata=bearer(READER))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'dashboards'" in message and "'write'" in message and READER not in message


def test_scopes(stub: pb_grpc.StreamStatsStub) -> None:
    admin, writer, reader = bearer(ADMIN), bearer(WRITER), bearer(READER)
    config = pb.StreamConfig(window_size=10)
    create = pb.CreateStreamRequest(name="api-made", config=config)
    assert code_and_details(lambda: stub.CreateStream(create, timeout=T, metadata=writer))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert code_and_details(lambda: stub.CreateStream(create, timeout=T, metadata=reader))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    stub.CreateStream(create, timeout=T, metadata=admin)
    # write: adds (to a missing stream too, which creates it with the default config) ...
    stub.AddNums(pb.AddNumsRequest(stream="api-made", values=[1, 2, 3]), timeout=T, metadata=writer)
    stub.AddNum(pb.AddNumRequest(stream="api-new", value=5), timeout=T, metadata=writer)
    # ... but no reads and no deletes.
    for call in (
        lambda: stub.FindMedian(pb.FindMedianRequest(stream="api-made"), timeout=T, metadata=writer),
        lambda: stub.GetStream(pb.GetStreamRequest(name="api-made"), timeout=T, metadata=writer),
        lambda: stub.ListStreams(pb.ListStreamsRequest(), timeout=T, metadata=writer),
        lambda: stub.DeleteStream(pb.DeleteStreamRequest(name="api-made"), timeout=T, metadata=writer),
        lambda: stub.DeleteStream(pb.DeleteStreamRequest(name="api-made"), timeout=T, metadata=reader),
    ):
        assert code_and_details(call)[0] == grpc.StatusCode.PERMISSION_DENIED
    # read: every query.
    assert stub.FindMedian(pb.FindMedianRequest(stream="api-made"), timeout=T, metadata=reader).median == 2
    assert list(stub.TopK(pb.TopKRequest(stream="api-made", k=2), timeout=T, metadata=reader).values) == [
        3,
        2,
    ]
    assert list(
        stub.BottomK(pb.BottomKRequest(stream="api-made", k=1), timeout=T, metadata=reader).values
    ) == [1]
    assert stub.GetStream(pb.GetStreamRequest(name="api-new"), timeout=T, metadata=reader).count == 1
    hashed = bearer(HASHED)  # a token given in the file only by its SHA-256
    assert stub.FindMedian(pb.FindMedianRequest(stream="api-made"), timeout=T, metadata=hashed).count == 3
    stub.DeleteStream(pb.DeleteStreamRequest(name="api-made"), timeout=T, metadata=admin)


def test_prefixes(stub: pb_grpc.StreamStatsStub) -> None:
    writer, reader, admin = bearer(WRITER), bearer(READER), bearer(ADMIN)
    stub.AddNum(pb.AddNumRequest(stream="web-x", value=1), timeout=T, metadata=admin)
    code, message = code_and_details(
        lambda: stub.AddNum(pb.AddNumRequest(stream="web-x", value=2), timeout=T, metadata=writer)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'web-x'" in message and "'api-'" in message
    # Outside its prefixes a stream is denied whether or not it exists: no probing for names.
    for name in ("other", "missing"):
        code, _ = code_and_details(
            lambda name=name: stub.FindMedian(pb.FindMedianRequest(stream=name), timeout=T, metadata=reader)  # type: ignore[misc]
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
    # A denied message in the middle of a StreamNums: the ones before it stay applied.
    requests = [
        pb.AddNumsRequest(stream="api-s", values=[1.0, 2.0]),
        pb.AddNumsRequest(stream="web-x", values=[9.0]),
        pb.AddNumsRequest(stream="api-s", values=[3.0]),
    ]
    code, message = code_and_details(lambda: stub.StreamNums(iter(requests), timeout=T, metadata=writer))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "2 values from earlier messages" in message
    assert stub.GetStream(pb.GetStreamRequest(name="api-s"), timeout=T, metadata=admin).count == 2
    assert stub.GetStream(pb.GetStreamRequest(name="web-x"), timeout=T, metadata=admin).count == 1


def list_names(stub: pb_grpc.StreamStatsStub, token: str, prefix: str = "", page_size: int = 0) -> list[str]:
    names: list[str] = []
    token_ = ""
    while True:
        page = stub.ListStreams(
            pb.ListStreamsRequest(prefix=prefix, page_size=page_size, page_token=token_),
            timeout=T,
            metadata=bearer(token),
        )
        names += [s.name for s in page.streams]
        token_ = page.next_page_token
        if not token_:
            return names


def test_list_shows_only_readable_streams(stub: pb_grpc.StreamStatsStub) -> None:
    everything = ["a", "api", "api-a", "api-b", "apx", "web-", "web-a", "web-b", "webz", "z"]
    for name in everything:
        stub.CreateStream(pb.CreateStreamRequest(name=name), timeout=T, metadata=bearer(ADMIN))
    readable = ["api-a", "api-b", "web-", "web-a", "web-b"]
    assert list_names(stub, ADMIN) == everything
    assert list_names(stub, READER) == readable
    for page_size in (1, 2, 3):
        assert list_names(stub, READER, page_size=page_size) == readable
    assert list_names(stub, READER, prefix="api") == ["api-a", "api-b"]
    assert list_names(stub, READER, prefix="web-a") == ["web-a"]
    assert list_names(stub, READER, prefix="we", page_size=1) == ["web-", "web-a", "web-b"]
    assert list_names(stub, READER, prefix="z") == []
    assert list_names(stub, HASHED) == everything  # no prefixes: every stream


def test_health_checks_need_no_token(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE.full_name):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def run_program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamstats_server", "--in-memory", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=program_environment(),
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com"])
def test_refuses_to_listen_openly_without_tls_or_tokens(host: str) -> None:
    result = run_program("--host", host)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"refusing to listen on {host} without TLS or tokens" in lines[0]
    assert "--insecure" in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("contents", "fragment"),
    [
        (None, "cannot read tokens file"),
        ("[[token]\n", "is not valid TOML"),
        ("", "no tokens"),
        ('[[token]]\nname = "a"\nsecret = "short"\nscopes = ["read"]\n', "at least 16 characters"),
        ('[[token]]\nname = "a"\nsecret = "0123456789abcdefg"\nscopes = ["root"]\n', "read, write or admin"),
        (
            '[[token]]\nname = "a"\nsecret = "0123456789abcdefg"\nsha256 = "00"\nscopes = ["read"]\n',
            "exactly one of secret or sha256",
        ),
    ],
)
def test_a_bad_tokens_file_stops_the_server_with_one_line(
    tmp_path: Path, contents: str | None, fragment: str
) -> None:
    path = tmp_path / "tokens.toml"
    if contents is not None:
        path.write_text(contents)
    result = run_program("--auth-tokens", str(path))
    assert result.returncode == 1
    assert fragment in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert "0123456789abcdefg" not in result.stderr
