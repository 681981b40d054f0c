"""JetStream's timestamps (nanoseconds, RFC 3339) read into datetimes (microseconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.direct_get import parse_nats_time


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1)),
    st.integers(0, 999),
)
def test_what_nats_server_writes_reads_back_to_the_microsecond(
    moment: datetime, nanos: int
) -> None:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}Z"  # nine digits, UTC
    assert parse_nats_time(stamp) == moment.replace(tzinfo=UTC)


def test_other_precisions_and_zones_keep_their_meaning() -> None:
    plus_one = timezone(timedelta(hours=1))
    cases = {
        "2026-12-07T04:43:51.6128Z": datetime(2026, 12, 7, 4, 43, 51, 612800, UTC),
        "2026-12-07T04:43:51Z": datetime(2026, 12, 7, 4, 43, 51, tzinfo=UTC),
        "2026-12-07T04:43:51.123456789+01:00": datetime(2026, 12, 7, 4, 43, 51, 123456, plus_one),
        "2026-12-07T04:43:51+01:00": datetime(2026, 12, 7, 4, 43, 51, tzinfo=plus_one),
        "": datetime.fromtimestamp(0, UTC),
    }
    for stamp, expected in cases.items():
        parsed = parse_nats_time(stamp)
        assert parsed == expected and parsed.utcoffset() == expected.utcoffset(), stamp
