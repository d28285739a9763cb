"""Flags and environment variables -> a typed ServerConfig.

Every flag --some-flag can also be set by the environment variable STREAMSTATS_SOME_FLAG; a flag given
on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamstats_server.storage import FsyncPolicy

MIB = 1024 * 1024
ENV_PREFIX = "STREAMSTATS_"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """Everything the server is started with."""

    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: str = "./data"  # "" keeps everything in memory (no durability)
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    repair: bool = False
    checkpoint_bytes: int = 32 * MIB
    max_k: int = 10_000
    max_message_bytes: int = 16 * MIB
    grace_seconds: float = 10.0
    # Security: TLS (cert + key), mutual TLS (client CA), bearer tokens; see README "Running it securely".
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_tokens: str = ""
    insecure: bool = False
    # Limits (0 = none): each refusal is RESOURCE_EXHAUSTED naming the limit and its value.
    max_streams: int = 100_000
    max_values: int = 100_000_000
    max_concurrent_rpcs: int = 1000
    # Operations.
    metrics_port: int | None = None  # None: no metrics endpoint; 0 picks a free port
    metrics_host: str = "127.0.0.1"
    log_format: str = "human"

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"--log-format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )
        if not (self.insecure or self.tls or self.auth_tokens or is_loopback(self.host)):
            raise ConfigError(
                f"refusing to listen on {self.host} without TLS or tokens: anyone who can reach it could "
                "read, write and delete every stream; give --tls-cert/--tls-key and/or --auth-tokens, "
                "or --insecure if this network is trusted"
            )

    @property
    def in_memory(self) -> bool:
        return not self.data_dir

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


LOG_FORMATS = ("human", "json")


class ConfigError(ValueError):
    """The flags contradict each other or are unsafe; the message says what to change."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


_BOOLEANS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, got {value}")
    return value


def _optional_port(text: str) -> int | None:
    return None if text in ("", "off", "none") else _port(text)


def _fsync_policy(text: str) -> FsyncPolicy:
    try:
        return FsyncPolicy(text)
    except ValueError:
        choices = ", ".join(p.value for p in FsyncPolicy)
        raise argparse.ArgumentTypeError(f"must be one of {choices}, got {text!r}") from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="streamstats-server",
        description="Serve named numeric streams with exact median, top-k and bottom-k over gRPC.",
        epilog=f"Each flag can also be set by an environment variable {ENV_PREFIX}<FLAG>, "
        "e.g. STREAMSTATS_PORT=6000 or STREAMSTATS_MAX_K=500; the command line wins.",
    )

    def add(flag: str, kind: type | object, default: object, help_text: str) -> None:
        env = _env_name(flag)
        parser.add_argument(
            flag,
            type=kind,  # type: ignore[arg-type]
            default=environ.get(env, default),
            help=f"{help_text} (default: {default!r}; env {env})",
        )

    def add_flag(flag: str, help_text: str) -> None:
        env = _env_name(flag)
        raw = environ.get(env, "")
        if raw.lower() not in _BOOLEANS:
            parser.error(f"{env}={raw!r}: use one of {', '.join(sorted(b for b in _BOOLEANS if b))}")
        parser.add_argument(
            flag, action="store_true", default=_BOOLEANS[raw.lower()], help=f"{help_text} (env {env}=1)"
        )

    add("--host", str, defaults.host, "address to listen on; 0.0.0.0 or :: for every interface")
    add("--port", _port, defaults.port, "port to listen on; 0 picks a free one (printed at start)")
    add(
        "--data-dir",
        str,
        defaults.data_dir,
        "folder for durable storage (created if missing); '' keeps everything in memory only",
    )
    add_flag(
        "--in-memory",
        "keep everything in memory: nothing is written to disk and nothing survives a restart "
        "(for tests and benchmarks; the same as --data-dir '')",
    )
    add(
        "--fsync",
        _fsync_policy,
        defaults.fsync.value,
        "when acknowledged writes reach the disk. always: fsynced before the call returns (concurrent "
        "writers share one fsync), survives a crash or a power cut. interval: written to the OS before "
        "the call returns and fsynced every second: a process crash (even kill -9) loses nothing, a power "
        "cut or OS crash loses at most about the last second. never: written to the OS before the call "
        "returns, fsynced when the OS decides: a process crash loses nothing, a power cut may lose "
        "anything not yet flushed",
    )
    add_flag(
        "--repair",
        "start even if the data is corrupt, dropping the damaged part of a log file and everything after "
        "it (in a corrupt checkpoint: the streams after the damage); without it a corrupt data dir "
        "stops the server with the file and offset. A torn last record is always dropped, with a warning",
    )
    add(
        "--checkpoint-bytes",
        _positive_int,
        defaults.checkpoint_bytes,
        "write a checkpoint (and delete the log it covers) once the log since the last one exceeds both "
        "this and a quarter of the last checkpoint's size",
    )
    add("--max-k", _positive_int, defaults.max_k, "largest k accepted by TopK and BottomK")
    add(
        "--max-message-bytes",
        _positive_int,
        defaults.max_message_bytes,
        "largest request or response message in bytes (an AddNums of 2M values is ~16 MiB)",
    )
    add(
        "--grace-seconds",
        _non_negative_float,
        defaults.grace_seconds,
        "on SIGTERM/SIGINT, how long calls in flight may take to finish",
    )
    add("--tls-cert", str, defaults.tls_cert, "PEM certificate chain: serve TLS (with --tls-key)")
    add("--tls-key", str, defaults.tls_key, "PEM private key of --tls-cert")
    add(
        "--tls-client-ca",
        str,
        defaults.tls_client_ca,
        "PEM CA bundle: require mutual TLS, accepting only client certificates it signed",
    )
    add(
        "--auth-tokens",
        str,
        defaults.auth_tokens,
        "TOML file of bearer tokens with scopes (read, write, admin) and stream-name prefixes; "
        "every call but health checks must then carry 'authorization: Bearer <token>'",
    )
    add_flag(
        "--insecure",
        "allow listening on a non-loopback address without TLS or tokens (a trusted network only)",
    )
    add("--max-streams", _non_negative_int, defaults.max_streams, "most streams at once; 0 = no limit")
    add(
        "--max-values",
        _non_negative_int,
        defaults.max_values,
        "most live values held across all streams (the memory budget, ~40 bytes each); 0 = no limit",
    )
    add(
        "--max-concurrent-rpcs",
        _non_negative_int,
        defaults.max_concurrent_rpcs,
        "most StreamStats calls in progress at once (health checks not counted); 0 = no limit",
    )
    add(
        "--metrics-port",
        _optional_port,
        "",
        "serve Prometheus metrics over HTTP on this port (0 picks a free one); '' = no metrics",
    )
    add("--metrics-host", str, defaults.metrics_host, "address of the metrics endpoint")
    add("--log-format", str, defaults.log_format, "log lines as 'human' text or 'json' objects")
    return parser


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Parse flags (argv) over environment variables (environ) over defaults."""
    parser = build_parser(os.environ if environ is None else environ)
    ns = parser.parse_args(argv)
    # argparse applies type= to string defaults (our env values) too, so everything is converted here.
    try:
        return _config_from(ns)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")


def _config_from(ns: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=ns.host,
        port=ns.port,
        data_dir="" if ns.in_memory else ns.data_dir,
        fsync=FsyncPolicy(ns.fsync),
        repair=ns.repair,
        checkpoint_bytes=ns.checkpoint_bytes,
        max_k=ns.max_k,
        max_message_bytes=ns.max_message_bytes,
        grace_seconds=ns.grace_seconds,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        tls_client_ca=ns.tls_client_ca,
        auth_tokens=ns.auth_tokens,
        insecure=ns.insecure,
        max_streams=ns.max_streams,
        max_values=ns.max_values,
        max_concurrent_rpcs=ns.max_concurrent_rpcs,
        metrics_port=ns.metrics_port,
        metrics_host=ns.metrics_host,
        log_format=ns.log_format,
    )
