"""Flags, environment variables and their precedence."""

from __future__ import annotations

import pytest

from streamstats_server.config import MIB, ServerConfig, parse_config


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
