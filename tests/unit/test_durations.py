"""Durations: the accepted forms, the refusals and their messages, and formatting."""

from __future__ import annotations

import pytest

from actors.definitions import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1m0.1s", 60.1),
        ("0s", 0.0),
        ("10", 10.0),
        (" 2.5 ", 2.5),
    ],
)
def test_parses_text(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (3, 3.0), (2.5, 2.5)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "expected a number of seconds or <number><unit>"),
        ("soon", "expected a number of seconds or <number><unit>"),
        ("10 minutes", "expected a number of seconds"),
        ("5 m", "expected a number of seconds"),
        ("1e3", "expected a number of seconds"),
        ("-1s", "expected a number of seconds"),
        ("1m1h", "largest first"),
        ("5m5m", "write each unit once"),
        (-1, "cannot be negative"),
        ("-1", "expected a number of seconds"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        ("9" * 400, "finite"),
        (10**400, "finite"),
        (True, "expected a number of seconds"),
        (None, "NoneType"),
        ([1], "list"),
    ],
)
def test_refusals_name_the_value_and_the_forms(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        parse_duration(value)
    assert reason in str(caught.value)


def test_refusal_quotes_the_value_and_lists_units() -> None:
    with pytest.raises(ValueError, match=r"'soon'.*500ms, 10s, 5m, 1h30m, 2d"):
        parse_duration("soon")


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(ValueError, match=r"\.\.\.") as caught:
        parse_duration("x" * 500)
    assert len(str(caught.value)) < 200


def test_arithmetic_is_exact_in_decimal() -> None:
    assert parse_duration("1m0.1s") == 60.1
    assert parse_duration("0.1s") + 0 == 0.1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (5400.0, "1h30m"), (90061.001, "1d1h1m1s1ms"), (60.1, "1m100ms")],
)
def test_formats_canonically(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(seconds)
