"""Bad options are refused before the CLI connects: the server named here never answers."""

from __future__ import annotations

from click.testing import CliRunner

from sdk.cli import main

NOWHERE = ["--nats", "nats://127.0.0.1:1"]


def test_a_limit_must_name_what_it_covers() -> None:
    result = CliRunner().invoke(main, ["limits", "set", "--limit", "3", "--per", "1s", *NOWHERE])
    assert result.exit_code == 1, result.output
    assert "name either a handler (--handler NAME) or labels" in result.output
    assert "cannot reach" not in result.output


def test_a_malformed_traceparent_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        main, ["run", "examples/hello.yaml", "--traceparent", "01-zz", *NOWHERE]
    )
    assert result.exit_code == 2, result.output
    assert "'01-zz' is not a W3C traceparent" in result.output
