"""The tokens file and the Caller's checks, without a server."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamstats_server.auth import EVERYONE, Caller, Scope, Tokens, TokensFileError
from streamstats_server.errors import PermissionDenied, Unauthenticated

SECRET = "s" * 20


def tokens(**entry: object) -> Tokens:
    base: dict[str, object] = {"name": "t", "secret": SECRET, "scopes": ["read"]}
    base.update(entry)
    return Tokens.from_data({"token": [base]})


def test_authenticate() -> None:
    known = tokens(prefixes=["a-"])
    caller = known.authenticate([("x-other", "1"), ("authorization", f"Bearer {SECRET}")])
    assert caller == Caller("t", frozenset({Scope.READ}), ("a-",))
    assert known.authenticate([("authorization", f"bearer  {SECRET} ")]).name == "t"
    with pytest.raises(Unauthenticated, match="requires a token"):
        known.authenticate([])
    with pytest.raises(Unauthenticated, match="unknown token"):
        known.authenticate([("authorization", "Bearer " + "x" * 20)])
    with pytest.raises(Unauthenticated, match="must read 'Bearer <token>'"):
        known.authenticate([("authorization", SECRET)])


def test_sha256_entries_hold_no_secret() -> None:
    known = Tokens.from_data(
        {"token": [{"name": "h", "sha256": hashlib.sha256(SECRET.encode()).hexdigest(), "scopes": ["admin"]}]}
    )
    assert known.authenticate([("authorization", f"Bearer {SECRET}")]).scopes == {Scope.ADMIN}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "no tokens"),
        ({"tokens": []}, "unknown top-level key"),
        ({"token": ["x"]}, "must be a [[token]] table"),
        ({"token": [{"secret": SECRET, "scopes": ["read"]}]}, "needs a name"),
        ({"token": [{"name": "a", "scopes": ["read"]}]}, "exactly one of secret or sha256"),
        ({"token": [{"name": "a", "secret": "has a space 0123456", "scopes": ["read"]}]}, "without spaces"),
        ({"token": [{"name": "a", "sha256": "zz", "scopes": ["read"]}]}, "64 hex digits"),
        ({"token": [{"name": "a", "secret": SECRET, "scopes": []}]}, "non-empty list"),
        (
            {"token": [{"name": "a", "secret": SECRET, "scopes": ["read"], "prefixes": [""]}]},
            "non-empty strings",
        ),
        ({"token": [{"name": "a", "secret": SECRET, "scopes": ["read"], "extra": 1}]}, "unknown key"),
        (
            {
                "token": [
                    {"name": "a", "secret": SECRET, "scopes": ["read"]},
                    {"name": "a", "secret": "t" * 20, "scopes": ["read"]},
                ]
            },
            "used twice",
        ),
        (
            {
                "token": [
                    {"name": "a", "secret": SECRET, "scopes": ["read"]},
                    {"name": "b", "secret": SECRET, "scopes": ["read"]},
                ]
            },
            "same secret",
        ),
    ],
)
def test_bad_entries_are_refused_without_echoing_secrets(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(TokensFileError) as info:
        Tokens.from_data(data, source="tokens.toml")
    assert fragment in str(info.value)
    assert "tokens.toml" in str(info.value)
    assert SECRET not in str(info.value)


def test_scopes_and_prefixes() -> None:
    caller = Caller("w", frozenset({Scope.WRITE}), ("api-", "web/"))
    caller.require(Scope.WRITE, "AddNum")
    with pytest.raises(PermissionDenied, match="lacks scope 'read', which FindMedian needs"):
        caller.require(Scope.READ, "FindMedian")
    caller.require_stream("api-x")
    caller.require_stream("web/y")
    with pytest.raises(PermissionDenied, match="may not touch stream 'apix'"):
        caller.require_stream("apix")
    EVERYONE.require(Scope.ADMIN, "DeleteStream")
    EVERYONE.require_stream("anything")


names = st.text(alphabet="ab-", max_size=4)


@given(st.lists(names.filter(bool), min_size=1, max_size=4), names, st.sets(names, max_size=30))
def test_visible_prefixes_cover_exactly_the_readable_names(
    allowed: list[str], prefix: str, streams: set[str]
) -> None:
    caller = Caller("r", frozenset({Scope.READ}), tuple(allowed))
    visible = caller.visible_prefixes(prefix)
    assert visible == sorted(visible)
    for i, p in enumerate(visible):  # disjoint: none extends another
        assert not any(q.startswith(p) for q in visible[i + 1 :])
    expected = {s for s in streams if s.startswith(prefix) and caller.may_touch(s)}
    assert {s for s in streams if any(s.startswith(p) for p in visible)} == expected
