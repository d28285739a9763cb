"""Flags, environment variables and their precedence."""

from __future__ import annotations

import pytest

from streamstats_server.config import MIB, ConfigError, ServerConfig, parse_config


def test_defaults() -> None:
    config = parse_config([], environ={})
    assert config == ServerConfig()
    assert (config.host, config.port, config.max_k) == ("127.0.0.1", 50051, 10_000)
    assert config.max_message_bytes >= 16 * MIB


def test_every_flag_has_an_environment_variable() -> None:
    environ = {
        "STREAMSTATS_HOST": "::1",
        "STREAMSTATS_PORT": "0",
        "STREAMSTATS_DATA_DIR": "/tmp/x",
        "STREAMSTATS_MAX_K": "7",
        "STREAMSTATS_MAX_MESSAGE_BYTES": "1000",
        "STREAMSTATS_GRACE_SECONDS": "2.5",
    }
    config = parse_config([], environ=environ)
    assert config == ServerConfig(
        host="::1", port=0, data_dir="/tmp/x", max_k=7, max_message_bytes=1000, grace_seconds=2.5
    )


def test_the_command_line_wins_over_the_environment() -> None:
    config = parse_config(["--max-k", "9", "--port", "7000"], environ={"STREAMSTATS_MAX_K": "7"})
    assert (config.max_k, config.port) == (9, 7000)


@pytest.mark.parametrize(
    "argv",
    [["--max-k", "0"], ["--port", "70000"], ["--port", "-1"], ["--max-message-bytes", "0"], ["--max-k", "x"]],
)
def test_bad_values_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(argv, environ={})
    assert info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_a_bad_environment_value_is_reported_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config([], environ={"STREAMSTATS_MAX_K": "-3"})
    assert "--max-k" in capsys.readouterr().err


def test_security_limits_and_operations_flags_have_environment_variables() -> None:
    environ = {
        "STREAMSTATS_TLS_CERT": "c.pem",
        "STREAMSTATS_TLS_KEY": "k.pem",
        "STREAMSTATS_TLS_CLIENT_CA": "ca.pem",
        "STREAMSTATS_AUTH_TOKENS": "t.toml",
        "STREAMSTATS_INSECURE": "1",
        "STREAMSTATS_MAX_STREAMS": "3",
        "STREAMSTATS_MAX_VALUES": "0",
        "STREAMSTATS_MAX_CONCURRENT_RPCS": "7",
        "STREAMSTATS_METRICS_PORT": "0",
        "STREAMSTATS_METRICS_HOST": "::1",
        "STREAMSTATS_LOG_FORMAT": "json",
    }
    config = parse_config([], environ=environ)
    assert config == ServerConfig(
        tls_cert="c.pem",
        tls_key="k.pem",
        tls_client_ca="ca.pem",
        auth_tokens="t.toml",
        insecure=True,
        max_streams=3,
        max_values=0,
        max_concurrent_rpcs=7,
        metrics_port=0,
        metrics_host="::1",
        log_format="json",
    )
    assert parse_config([], environ={}).metrics_port is None


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"tls_cert": "c.pem"}, "--tls-cert and --tls-key go together"),
        ({"tls_key": "k.pem"}, "--tls-cert and --tls-key go together"),
        ({"tls_client_ca": "ca.pem"}, "needs --tls-cert"),
        ({"log_format": "xml"}, "--log-format"),
        ({"host": "0.0.0.0"}, "refusing to listen on 0.0.0.0"),
        ({"host": "::"}, "refusing to listen on ::"),
        ({"host": "my-host.internal"}, "refusing to listen on my-host.internal"),
    ],
)
def test_contradictory_or_unsafe_configs_are_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ServerConfig(**overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {"host": "127.0.0.1"},
        {"host": "127.0.0.2"},
        {"host": "::1"},
        {"host": "localhost"},
        {"host": "0.0.0.0", "insecure": True},
        {"host": "0.0.0.0", "auth_tokens": "t.toml"},
        {"host": "0.0.0.0", "tls_cert": "c.pem", "tls_key": "k.pem"},
    ],
)
def test_open_addresses_need_tls_tokens_or_insecure(overrides: dict[str, object]) -> None:
    ServerConfig(**overrides)  # type: ignore[arg-type]
