"""Client settings: one frozen value object shared by the sync and async clients."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ClientConfig", "TLSConfig"]

# gRPC rejects a retry policy above 5 attempts (it silently clamps), so more retries than this
# would be a promise the channel does not keep.
MAX_READ_RETRIES = 4

# Below this a request naming a stream could not carry even one value.
MIN_MESSAGE_BYTES = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class TLSConfig:
    """TLS for the channel: files are read when a client is created.

    Attributes:
        ca_file: PEM file of the CA(s) that signed the server's certificate; None trusts the
            system's roots.
        cert_file, key_file: This client's PEM certificate chain and private key, for a server that
            requires mutual TLS (``--tls-client-ca``). Both or neither.
        server_name: The name to check the server's certificate against, when it differs from the
            host in the target (e.g. dialing an IP address).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "TLSConfig: cert_file and key_file go together (mutual TLS): give both or neither"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """How a :class:`~streamstats.Client` or :class:`~streamstats.AsyncClient` talks to the server.

    Attributes:
        timeout: Default deadline of every call, in seconds; a method's ``timeout=`` overrides it.
            It bounds the whole call, retries included.
        max_message_bytes: Largest message sent or received. Set it to the server's limit:
            ``add_many`` splits batches to fit it.
        read_retries: Extra attempts for reads (GetStream, ListStreams, FindMedian, TopK,
            BottomK) that fail with UNAVAILABLE; 0 disables retries, at most 4. Writes are never
            retried, so a write is applied at most once per call.
        retry_initial_backoff, retry_max_backoff, retry_backoff_multiplier: The exponential
            backoff between read attempts, in seconds (gRPC adds random jitter).
        token: A bearer token sent with every call (``authorization: Bearer <token>``), for a
            server started with ``--auth-tokens``. Never shown in a repr or an error. Use TLS
            unless the server is on this machine: over plaintext anyone on the path can read it.
        tls: Connect with TLS (see :class:`TLSConfig`); None connects in plaintext.
    """

    timeout: float = 10.0
    max_message_bytes: int = 16 * 1024 * 1024
    read_retries: int = 4
    retry_initial_backoff: float = 0.1
    retry_max_backoff: float = 2.0
    retry_backoff_multiplier: float = 2.0
    token: str | None = field(default=None, repr=False)
    tls: TLSConfig | None = None

    def __post_init__(self) -> None:
        if self.token is not None and (
            not isinstance(self.token, str) or not self.token or any(c.isspace() for c in self.token)
        ):
            raise ValueError("token must be a non-empty string without spaces")
        if self.tls is not None and not isinstance(self.tls, TLSConfig):
            raise TypeError(f"tls must be a streamstats.TLSConfig, got {type(self.tls).__name__}")
        _positive("timeout", self.timeout)
        _positive("retry_initial_backoff", self.retry_initial_backoff)
        _positive("retry_max_backoff", self.retry_max_backoff)
        _positive("retry_backoff_multiplier", self.retry_backoff_multiplier)
        if isinstance(self.max_message_bytes, bool) or not isinstance(self.max_message_bytes, int):
            raise TypeError(f"max_message_bytes must be an int, got {self.max_message_bytes!r}")
        if not MIN_MESSAGE_BYTES <= self.max_message_bytes <= 2**31 - 1:
            raise ValueError(
                f"max_message_bytes must be between {MIN_MESSAGE_BYTES} and {2**31 - 1}, "
                f"got {self.max_message_bytes}"
            )
        if isinstance(self.read_retries, bool) or not isinstance(self.read_retries, int):
            raise TypeError(f"read_retries must be an int, got {self.read_retries!r}")
        if not 0 <= self.read_retries <= MAX_READ_RETRIES:
            raise ValueError(
                f"read_retries must be between 0 and {MAX_READ_RETRIES}, got {self.read_retries}"
            )


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
