"""``minibroker serve`` options: flags, MINIBROKER_* environment variables, token files.

These run the argument parsing in-process (fast); tests/cli/test_serve_process.py
runs the real command as a subprocess.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pytest

from minibroker.access.auth import Authenticator, load_tokens_file
from minibroker.cli import build_parser, main
from minibroker.cli.serve import config_from_args
from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.defaults import DEFAULT_HOST, DEFAULT_PORT
from minibroker.protocol.codec import DEFAULT_MAX_FRAME_BYTES

#: Every flag of `minibroker serve` the docs promise (docs/operations.md).
FLAGS = [
    "--host",
    "--port",
    "--max-frame-bytes",
    "--max-connections",
    "--max-handshaking-connections",
    "--max-queues",
    "--max-logs",
    "--max-bindings",
    "--max-groups",
    "--max-exchanges",
    "--max-namespaces",
    "--max-queues-total",
    "--max-logs-total",
    "--partial-frame-budget",
    "--auth-token",
    "--auth-file",
    "--permissions",
    "--hello-timeout",
    "--busy-poll-us",
    "--amqp-port",
    "--memory-high-watermark",
    "--disk-free-limit",
    "--tls-cert",
    "--tls-key",
    "--metrics-host",
    "--metrics-port",
    "--http-port",
    "--http-max-connections",
    "--kafka-port",
    "--kafka-auto-create",
    "--kafka-partitions",
    "--sqs-port",
    "--sqs-keys",
    "--data-dir",
    "--fsync",
    "--shutdown-grace",
    "--log-level",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the built-in defaults, whatever MINIBROKER_* the caller exported."""
    for name in list(os.environ):
        if name.startswith("MINIBROKER_"):
            monkeypatch.delenv(name)


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def serve_flags() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    return {s for a in serve._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in out, flag
    assert "MINIBROKER_" in out
    # And nothing undocumented: the list above is the whole set.
    assert serve_flags() == set(FLAGS)


def test_sqs_flags(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("AKID:secret\n")
    config = config_from_args(serve_args("--sqs-port", "9324", "--sqs-keys", str(keys)))
    assert config.sqs_port == 9324
    assert config.sqs_keys == {"AKID": "secret"}
    assert config_from_args(serve_args()).sqs_port is None


def test_http_port_flag() -> None:
    assert config_from_args(serve_args("--http-port", "8080")).http_port == 8080
    assert config_from_args(serve_args()).http_port is None


def test_http_max_connections_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_args(serve_args()).http_max_connections == 1000
    assert config_from_args(serve_args("--http-max-connections", "50")).http_max_connections == 50
    monkeypatch.setenv("MINIBROKER_HTTP_MAX_CONNECTIONS", "7")
    assert config_from_args(serve_args()).http_max_connections == 7
    with pytest.raises(ValueError, match="http_max_connections must be a positive integer"):
        config_from_args(serve_args("--http-max-connections", "0"))


def test_max_handshaking_connections_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_args(serve_args()).max_handshaking_connections == 10_000
    config = config_from_args(serve_args("--max-connections", "40"))
    assert config.max_handshaking_connections == 40  # the same as --max-connections by default
    flag = "--max-handshaking-connections"
    assert config_from_args(serve_args(flag, "50")).max_handshaking_connections == 50
    monkeypatch.setenv("MINIBROKER_MAX_HANDSHAKING_CONNECTIONS", "7")
    assert config_from_args(serve_args()).max_handshaking_connections == 7
    with pytest.raises(ValueError, match="max_handshaking_connections must be an integer of at"):
        config_from_args(serve_args(flag, "0"))


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("--max-queues", "max_queues_per_namespace"),
        ("--max-logs", "max_logs_per_namespace"),
        ("--max-bindings", "max_bindings_per_namespace"),
        ("--max-groups", "max_groups_per_namespace"),
        ("--max-exchanges", "max_exchanges_per_namespace"),
        ("--max-namespaces", "max_namespaces"),
        ("--max-queues-total", "max_queues_total"),
        ("--max-logs-total", "max_logs_total"),
    ],
)
def test_object_limit_flags(monkeypatch: pytest.MonkeyPatch, flag: str, field: str) -> None:
    assert getattr(config_from_args(serve_args()).limits, field) == getattr(Limits(), field)
    assert getattr(config_from_args(serve_args(flag, "3")).limits, field) == 3
    monkeypatch.setenv("MINIBROKER_" + flag[2:].upper().replace("-", "_"), "7")
    assert getattr(config_from_args(serve_args()).limits, field) == 7
    with pytest.raises(ValueError, match=f"{field} must be an integer of at least 1, got 0"):
        config_from_args(serve_args(flag, "0"))


def test_defaults() -> None:
    config = config_from_args(serve_args())
    assert config == ServerConfig()
    assert config.host == DEFAULT_HOST == "127.0.0.1"
    assert config.port == DEFAULT_PORT == 7878
    assert config.max_frame_bytes == DEFAULT_MAX_FRAME_BYTES
    assert config.tokens is None
    assert config.metrics_port is None
    assert config.fsync == "batch"


def test_flags() -> None:
    config = config_from_args(
        serve_args(
            "--host",
            "0.0.0.0",
            "--port",
            "9999",
            "--max-frame-bytes",
            "4096",
            "--max-connections",
            "7",
            "--metrics-host",
            "::1",
            "--metrics-port",
            "9100",
            "--data-dir",
            "/tmp/x",
            "--fsync",
            "always",
            "--shutdown-grace",
            "1.5",
            "--busy-poll-us",
            "300",
            "--amqp-port",
            "5673",
        )
    )
    assert config.host == "0.0.0.0"
    assert config.port == 9999
    assert config.max_frame_bytes == 4096
    assert config.max_connections == 7
    assert config.metrics_host == "::1"
    assert config.metrics_port == 9100
    assert config.data_dir == Path("/tmp/x")
    assert config.fsync == "always"
    assert config.shutdown_grace == 1.5
    assert config.busy_poll_us == 300.0
    assert config.amqp_port == 5673


def test_partial_frame_budget_flag() -> None:
    config = config_from_args(serve_args("--partial-frame-budget", "1048576"))
    assert config.partial_frame_budget == 1048576
    with pytest.raises(ValueError, match="partial_frame_budget must be a positive integer"):
        config_from_args(serve_args("--partial-frame-budget", "0"))


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("MINIBROKER_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("MINIBROKER_PORT", "7001", "port", 7001),
        ("MINIBROKER_MAX_FRAME_BYTES", "2048", "max_frame_bytes", 2048),
        ("MINIBROKER_MAX_CONNECTIONS", "5", "max_connections", 5),
        ("MINIBROKER_AUTH_TOKEN", "t0k", "tokens", {"t0k": "token"}),
        ("MINIBROKER_METRICS_HOST", "0.0.0.0", "metrics_host", "0.0.0.0"),
        ("MINIBROKER_METRICS_PORT", "9101", "metrics_port", 9101),
        ("MINIBROKER_AMQP_PORT", "5672", "amqp_port", 5672),
        ("MINIBROKER_DATA_DIR", "/var/lib/mb", "data_dir", Path("/var/lib/mb")),
        ("MINIBROKER_FSYNC", "never", "fsync", "never"),
        ("MINIBROKER_SHUTDOWN_GRACE", "2.5", "shutdown_grace", 2.5),
        ("MINIBROKER_BUSY_POLL_US", "150", "busy_poll_us", 150.0),
    ],
)
def test_environment_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(config_from_args(serve_args()), attribute) == expected


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIBROKER_PORT", "7001")
    assert config_from_args(serve_args("--port", "7002")).port == 7002


def test_log_level_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIBROKER_LOG_LEVEL", "debug")
    assert serve_args().log_level == "debug"


def test_tls_files_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIBROKER_TLS_CERT", "/etc/mb/cert.pem")
    monkeypatch.setenv("MINIBROKER_TLS_KEY", "/etc/mb/key.pem")
    config = config_from_args(serve_args())
    assert config.tls_cert == Path("/etc/mb/cert.pem")
    assert config.tls_key == Path("/etc/mb/key.pem")


@pytest.mark.parametrize("value", ["-1", "10001"])
def test_busy_poll_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="--busy-poll-us must be between 0 and 10000"):
        config_from_args(serve_args("--busy-poll-us", value))


def test_tls_cert_needs_a_key() -> None:
    with pytest.raises(SystemExit, match="--tls-cert and --tls-key"):
        config_from_args(serve_args("--tls-cert", "cert.pem"))


@pytest.mark.parametrize("bad", [["--port", "seven"], ["--fsync", "sometimes"]])
def test_bad_flag_values_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_args(*bad)
    assert exit_info.value.code == 2


# ----------------------------------------------------------- token files


def test_auth_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# who may connect\n\nci:s3cret\n  ops : with spaces  \nbare-token\nsvc:token:with:colons\n"
    )
    tokens = load_tokens_file(str(path))
    assert tokens == {
        "s3cret": "ci",
        "with spaces": "ops",
        "bare-token": "token5",  # named after its line number
        "token:with:colons": "svc",
    }
    auth = Authenticator(tokens)
    assert auth.authenticate("s3cret").name == "ci"
    assert auth.authenticate("token:with:colons").name == "svc"


def test_auth_file_rejects_an_empty_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ci:s3cret\nops:\n")
    with pytest.raises(ValueError, match=r"tokens:2: empty token"):
        load_tokens_file(str(path))


def test_auth_token_and_file_combine(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ci:s3cret\n")
    config = config_from_args(serve_args("--auth-token", "admin-t", "--auth-file", str(path)))
    assert config.tokens == {"admin-t": "token", "s3cret": "ci"}


def test_missing_auth_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (keep serve's logging set-up from touching this test process's root logger)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    status = main(["serve", "--auth-file", str(tmp_path / "missing"), "--port", "0"])
    assert status == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("MINIBROKER_PORT", "seven", "invalid int value: 'seven'"),
        ("MINIBROKER_SHUTDOWN_GRACE", "soon", "invalid float value: 'soon'"),
        ("MINIBROKER_FSYNC", "sometimes", "MINIBROKER_FSYNC='sometimes' is not one of"),
        ("MINIBROKER_LOG_LEVEL", "loud", "MINIBROKER_LOG_LEVEL='loud' is not one of"),
    ],
)
def test_bad_environment_values_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    complaint: str,
) -> None:
    """A bad MINIBROKER_* value is reported like a bad flag: one line, status 2."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_kafka_flags() -> None:
    config = config_from_args(
        serve_args("--kafka-port", "0", "--kafka-auto-create", "off", "--kafka-partitions", "4")
    )
    assert (config.kafka_port, config.kafka_auto_create_topics, config.kafka_partitions) == (
        0,
        False,
        4,
    )


def test_a_kafka_port_sits_beside_authentication() -> None:
    """The Kafka port logs clients in with SASL against the same tokens (docs/kafka.md)."""
    config = config_from_args(serve_args("--kafka-port", "0", "--auth-token", "secret"))
    assert (config.kafka_port, config.tokens) == (0, {"secret": "token"})


def test_resource_alarm_flags(tmp_path: Path) -> None:
    config = config_from_args(
        serve_args(
            "--memory-high-watermark",
            "1000000",
            "--disk-free-limit",
            "5000",
            "--data-dir",
            str(tmp_path),
        )
    )
    assert (config.memory_high_watermark, config.disk_free_limit) == (1_000_000, 5000)
    assert config_from_args(serve_args()).memory_high_watermark is None


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        # Each of these started a broker that could not work, or failed later
        # with a traceback (a NaN grace only at shutdown, deep in Trio).
        ("--hello-timeout", "1e-300", "hello_timeout must be between 0.001 and 86400 seconds"),
        ("--hello-timeout", "1e300", "hello_timeout must be between 0.001 and 86400 seconds"),
        ("--hello-timeout", "nan", "hello_timeout must be between 0.001 and 86400 seconds"),
        ("--hello-timeout", "inf", "hello_timeout must be between 0.001 and 86400 seconds"),
        ("--shutdown-grace", "nan", "shutdown_grace must be between 0 and 86400 seconds"),
        ("--shutdown-grace", "-5", "shutdown_grace must be between 0 and 86400 seconds"),
        ("--shutdown-grace", "1e300", "shutdown_grace must be between 0 and 86400 seconds"),
        ("--max-connections", "0", "max_connections must be an integer of at least 1"),
        ("--max-connections", "-3", "max_connections must be an integer of at least 1"),
        ("--memory-high-watermark", "-1", "memory_high_watermark must be an integer of at least 1"),
        ("--disk-free-limit", "-1", "disk_free_limit must be an integer of at least 0"),
        ("--kafka-partitions", "0", "kafka_partitions must be an integer from 1 to 1000"),
        ("--kafka-partitions", "100000000", "kafka_partitions must be an integer from 1 to 1000"),
        ("--port", "99999", "port must be a port number from 0 to 65535"),
        ("--sqs-port", "70000", "sqs_port must be a port number from 0 to 65535"),
        ("--metrics-port", "-2", "metrics_port must be a port number from 0 to 65535"),
        ("--http-port", "65536", "http_port must be a port number from 0 to 65535"),
        ("--amqp-port", "-1", "amqp_port must be a port number from 0 to 65535"),
        ("--kafka-port", "1000000", "kafka_port must be a port number from 0 to 65535"),
    ],
)
def test_absurd_values_are_refused(flag: str, value: str, complaint: str) -> None:
    # (`minibroker serve` prints a ValueError from here as one line, status 2:
    # test_a_refused_value_is_one_line_and_status_2.)
    with pytest.raises(ValueError, match=complaint):
        config_from_args(serve_args("--port", "0", flag, value))


def test_a_refused_value_is_one_line_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    assert main(["serve", "--port", "0", "--partial-frame-budget", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minibroker serve: partial_frame_budget must be")
    assert err.count("\n") == 1


def test_values_at_the_bounds_are_taken() -> None:
    config = config_from_args(
        serve_args(
            "--hello-timeout", "0.001", "--shutdown-grace", "0", "--max-connections", "1",
            "--kafka-partitions", "1000", "--port", "65535", "--disk-free-limit", "0",
        )
    )  # fmt: skip
    assert (config.hello_timeout, config.shutdown_grace, config.port) == (0.001, 0.0, 65535)


@pytest.mark.parametrize("problem", ["missing", "not PEM"])
def test_an_unloadable_tls_file_is_named_in_the_start_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    """ssl's own error names no file ("[Errno 2] No such file or directory",
    "[SSL] PEM lib"): the start error line says which files it could not load."""
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if problem == "not PEM":
        cert.write_text("not a certificate\n")
        key.write_text("not a key\n")
    status = main(["serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)])
    assert status == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("minibroker serve: cannot start: ")
    assert f"--tls-cert {cert}" in line and f"--tls-key {key}" in line
