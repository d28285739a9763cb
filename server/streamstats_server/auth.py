"""Bearer tokens with scopes and stream-name prefixes, loaded from a TOML tokens file.

The file (``--auth-tokens FILE``) lists tokens::

    [[token]]
    name = "ingest"                # unique; shown in logs, never the secret
    secret = "..."                 # the bearer token, at least 16 characters; or instead
    # sha256 = "<64 hex digits>"   # its SHA-256, so the file holds no secret
    scopes = ["write"]             # any of "read", "write", "admin"
    prefixes = ["api-"]            # optional: the stream names it may touch start with one of these

Callers send ``authorization: Bearer <token>`` metadata. Only digests are kept in memory, and a
presented token is compared with every known digest by ``hmac.compare_digest`` (no early exit), so
neither the comparison nor the lookup reveals how much of a guess was right.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamstats_server.errors import PermissionDenied, Unauthenticated

MIN_SECRET_LENGTH = 16
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_BEARER = re.compile(r"bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


class Scope(enum.StrEnum):
    READ = "read"  # queries, GetStream, ListStreams
    WRITE = "write"  # AddNum, AddNums, StreamNums (which create a missing stream with the default config)
    ADMIN = "admin"  # CreateStream, DeleteStream


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and what they may do. ``prefixes`` empty means every stream."""

    name: str
    scopes: frozenset[Scope]
    prefixes: tuple[str, ...] = ()

    def require(self, scope: Scope, method: str) -> None:
        """PermissionDenied unless the token has ``scope``."""
        if scope not in self.scopes:
            granted = ", ".join(sorted(self.scopes)) or "none"
            raise PermissionDenied(
                f"token {self.name!r} lacks scope {scope.value!r}, which {method} needs (it has: {granted})"
            )

    def may_touch(self, stream: str) -> bool:
        return not self.prefixes or stream.startswith(self.prefixes)

    def require_stream(self, stream: str) -> None:
        """PermissionDenied unless the token's prefixes allow the stream."""
        if not self.may_touch(stream):
            allowed = ", ".join(repr(p) for p in self.prefixes)
            raise PermissionDenied(
                f"token {self.name!r} may not touch stream {stream!r}: its names must start with {allowed}"
            )

    def visible_prefixes(self, prefix: str) -> list[str]:
        """The disjoint, sorted prefixes whose streams both start with ``prefix`` and are allowed.

        Listing walks each of them in order, so a token that may see few streams never scans the
        rest: O(p log p) for p prefixes.
        """
        if not self.prefixes:
            return [prefix]
        narrowed = set()
        for allowed in self.prefixes:
            if allowed.startswith(prefix):
                narrowed.add(allowed)
            elif prefix.startswith(allowed):
                narrowed.add(prefix)
        return _outermost(narrowed)


def _outermost(prefixes: Iterable[str]) -> list[str]:
    """Drop every prefix that extends another one; what is left is disjoint and in name order."""
    kept: list[str] = []
    for p in sorted(prefixes):
        if not kept or not p.startswith(kept[-1]):
            kept.append(p)
    return kept


#: The caller when the server has no tokens file: everything is allowed.
EVERYONE = Caller(name="anonymous", scopes=frozenset(Scope))


@dataclass(frozen=True, slots=True)
class _Token:
    digest: bytes
    caller: Caller


class Tokens:
    """The known tokens; ``authenticate`` turns call metadata into a Caller."""

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._tokens = tuple(tokens)

    @classmethod
    def from_file(cls, path: str) -> Tokens:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise TokensFileError(f"cannot read tokens file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TokensFileError(f"tokens file {path} is not valid TOML: {exc}") from None
        return cls.from_data(data, source=path)

    @classmethod
    def from_data(cls, data: dict[str, object], *, source: str = "tokens") -> Tokens:
        unknown = set(data) - {"token"}
        if unknown:
            raise TokensFileError(f"{source}: unknown top-level key(s) {sorted(unknown)}; expected [[token]]")
        entries = data.get("token", [])
        if not isinstance(entries, list) or not entries:
            raise TokensFileError(f"{source}: no tokens; add at least one [[token]] table")
        tokens: list[_Token] = []
        names: set[str] = set()
        for number, entry in enumerate(entries, 1):
            where = f"{source}: token #{number}"
            if not isinstance(entry, dict):
                raise TokensFileError(f"{where}: must be a [[token]] table")
            token = _parse_entry(entry, where)
            if token.caller.name in names:
                raise TokensFileError(f"{where}: name {token.caller.name!r} is used twice")
            if any(hmac.compare_digest(token.digest, other.digest) for other in tokens):
                raise TokensFileError(f"{where}: the same secret as an earlier token")
            names.add(token.caller.name)
            tokens.append(token)
        return cls(tokens)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller a call's ``authorization: Bearer <token>`` metadata names; Unauthenticated if
        it is missing, malformed or unknown. The error never echoes the token."""
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode("latin-1")
                break
        if header is None:
            raise Unauthenticated(
                "this server requires a token: send metadata 'authorization: Bearer <token>'"
            )
        match = _BEARER.fullmatch(header)
        if match is None:
            raise Unauthenticated("the authorization metadata must read 'Bearer <token>'")
        presented = hashlib.sha256(match.group(1).encode()).digest()
        found: Caller | None = None
        for token in self._tokens:  # every comparison runs: the time does not depend on which matched
            if hmac.compare_digest(presented, token.digest):
                found = token.caller
        if found is None:
            raise Unauthenticated("unknown token")
        return found


def _parse_entry(entry: dict[str, object], where: str) -> _Token:
    unknown = set(entry) - {"name", "secret", "sha256", "scopes", "prefixes"}
    if unknown:
        raise TokensFileError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise TokensFileError(f"{where}: needs a name (a non-empty string)")
    where = f"{where} ({name!r})"
    secret, sha256 = entry.get("secret"), entry.get("sha256")
    if (secret is None) == (sha256 is None):
        raise TokensFileError(f"{where}: give exactly one of secret or sha256")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH or _has_space(secret):
            raise TokensFileError(
                f"{where}: secret must be at least {MIN_SECRET_LENGTH} characters without spaces"
            )
        digest = hashlib.sha256(secret.encode()).digest()
    else:
        if not isinstance(sha256, str) or _SHA256_HEX.fullmatch(sha256) is None:
            raise TokensFileError(f"{where}: sha256 must be 64 hex digits")
        digest = bytes.fromhex(sha256)
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        raise TokensFileError(f"{where}: scopes must be a non-empty list of read, write, admin")
    try:
        parsed_scopes = frozenset(Scope(s) for s in scopes)
    except ValueError:
        raise TokensFileError(f"{where}: scopes {scopes!r}: each must be read, write or admin") from None
    prefixes = entry.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise TokensFileError(f"{where}: prefixes must be a list of non-empty strings")
    return _Token(digest, Caller(name, parsed_scopes, tuple(prefixes)))


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)
