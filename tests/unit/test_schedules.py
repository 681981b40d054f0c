"""Schedules' pure parts: validating ``schedule:``/``version:``, next ticks, catch-up, overlap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.definitions import load_workflow_text, parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.scheduler import run_id, tick_key
from actors.schedules import MISSED_AFTER, next_tick, plan_tick, rule_latest, rule_next
from events.definition import ScheduleRule
from events.definition_store import digest, parse_reference
from events.errors import InvalidWorkflow

JOBS = {"a": {"run": "true"}}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def problems(**fields: Any) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow({"name": "n", "jobs": JOBS, **fields})
    return caught.value.problems


# --- validation ------------------------------------------------------------------------------


def test_a_schedule_and_a_version_parse_and_round_trip() -> None:
    definition = parse_workflow(
        {
            "name": "n",
            "jobs": JOBS,
            "version": 3,
            "schedule": [
                {"cron": "*/5  * * * *", "timezone": "Europe/Berlin"},
                {"every": "30s", "catch_up": "skip", "overlap": "skip"},
            ],
        }
    )
    assert definition.version == 3
    assert definition.schedule == (
        ScheduleRule(cron="*/5 * * * *", timezone="Europe/Berlin"),
        ScheduleRule(every=30.0, catch_up="skip", overlap="skip"),
    )
    assert parse_workflow(definition_mapping(definition)) == definition


def test_one_rule_needs_no_list() -> None:
    assert parse_workflow({"name": "n", "jobs": JOBS, "schedule": {"cron": "@daily"}}).schedule == (
        ScheduleRule(cron="@daily"),
    )


def test_every_bad_rule_is_reported_with_its_location() -> None:
    found = problems(
        version=0,
        schedule=[
            {"cron": "61 * * * *", "timezone": "Mars/Olympus"},
            {"every": "500ms"},
            {"every": "1x", "catch_up": "all", "overlap": "never"},
            {"cron": "* * *"},
            {"every": "1h", "timezone": "UTC"},
            {"cron": "@daily", "every": "1h"},
            {},
            "hourly",
        ],
    )
    expected = [
        "version: expected a whole number from 1 up",
        "schedule[0].cron: '61 * * * *' is not a valid cron expression",
        "schedule[0].timezone: unknown time zone 'Mars/Olympus'",
        "schedule[1].every: '500ms' is too short: at least 1s",
        "schedule[2].every: invalid duration '1x'",
        "schedule[2].catch_up: expected last or skip, got 'all'",
        "schedule[2].overlap: expected allow or skip, got 'never'",
        "schedule[3].cron: '* * *': expected 5 fields",
        "schedule[4].timezone: a timezone applies to a cron rule only",
        "schedule[5]: give exactly one of cron or every",
        "schedule[6]: give exactly one of cron or every",
        "schedule[7]: expected a mapping",
    ]
    for text in expected:
        assert any(problem.startswith(text) for problem in found), (text, found)
    assert len(found) == len(expected)


def test_schedule_problems_in_a_file_carry_their_line() -> None:
    text = "name: n\njobs:\n  a: {run: 'true'}\nschedule:\n  - cron: '0 25 * * *'\n"
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(text, source="nightly.yaml")
    assert caught.value.problems == [
        "nightly.yaml:5 schedule[0].cron: '0 25 * * *' is not a valid cron expression"
    ]


def test_references_and_digests() -> None:
    assert parse_reference("nightly") == ("nightly", None)
    assert parse_reference("nightly@12") == ("nightly", 12)
    for bad in ("nightly@0", "nightly@x", "a.b", "examples/nightly.yaml", "n@1@2", ""):
        assert parse_reference(bad) is None, bad
    one = parse_workflow({"name": "n", "jobs": JOBS})
    assert digest(one) == digest(one.model_copy(update={"version": 7}))
    assert digest(one) != digest(parse_workflow({"name": "n", "jobs": {"b": {"run": "true"}}}))


# --- the next tick ---------------------------------------------------------------------------


def test_every_ticks_on_multiples_of_its_period_since_the_epoch() -> None:
    rule = ScheduleRule(every=30.0)
    assert rule_next(rule, at("2026-12-06T20:00:10")) == at("2026-12-06T20:00:30")
    assert rule_next(rule, at("2026-12-06T20:00:30")) == at("2026-12-06T20:01:00")
    assert rule_latest(rule, at("2026-12-06T20:00:30")) == at("2026-12-06T20:00:30")
    assert rule_latest(rule, at("2026-12-06T20:00:59.999")) == at("2026-12-06T20:00:30")


def test_cron_ticks_in_its_time_zone_across_daylight_saving() -> None:
    rule = ScheduleRule(cron="30 2 * * *", timezone="Europe/Berlin")
    # 02:30 Berlin is 00:30 UTC in summer, 01:30 UTC in winter.
    assert rule_next(rule, at("2026-07-01T12:00:00")) == at("2026-07-02T00:30:00")
    assert rule_next(rule, at("2026-12-06T12:00:00")) == at("2026-12-07T01:30:00")
    # On 29 March 2026 Berlin skips 02:00-03:00: cron has no 02:30 that day.
    assert rule_next(rule, at("2026-03-28T12:00:00")) > at("2026-03-29T00:00:00")
    assert rule_latest(rule, at("2026-12-07T01:30:00")) == at("2026-12-07T01:30:00")
    utc = ScheduleRule(cron="*/5 * * * *")
    assert rule_next(utc, at("2026-12-06T20:03:00")) == at("2026-12-06T20:05:00")


def test_a_schedules_next_tick_is_its_earliest_rules() -> None:
    rules = [ScheduleRule(cron="0 * * * *"), ScheduleRule(every=600.0)]
    assert next_tick(rules, at("2026-12-06T20:41:00")) == at("2026-12-06T20:50:00")
    assert next_tick(rules, at("2026-12-06T20:55:00")) == at("2026-12-06T21:00:00")


# --- catch-up and overlap --------------------------------------------------------------------

MINUTELY = [ScheduleRule(cron="* * * * *")]


def test_an_on_time_tick_runs_and_the_next_one_is_armed() -> None:
    plan = plan_tick(MINUTELY, due=at("2026-12-06T20:00"), now=at("2026-12-06T20:00:00.2"),
                     previous_running=False)  # fmt: skip
    assert (plan.run, plan.next, plan.missed) == (
        at("2026-12-06T20:00"),
        at("2026-12-06T20:01"),
        False,
    )


def test_a_tick_handled_early_still_runs_itself() -> None:
    plan = plan_tick(MINUTELY, due=at("2026-12-06T20:00"), now=at("2026-12-06T19:59:59.9"),
                     previous_running=False)  # fmt: skip
    assert (plan.run, plan.next) == (at("2026-12-06T20:00"), at("2026-12-06T20:01"))


def test_catch_up_last_runs_only_the_latest_missed_tick() -> None:
    plan = plan_tick(MINUTELY, due=at("2026-12-06T20:00"), now=at("2026-12-06T23:17:30"),
                     previous_running=False)  # fmt: skip
    assert (plan.run, plan.next, plan.missed) == (
        at("2026-12-06T23:17"),
        at("2026-12-06T23:18"),
        True,
    )


def test_catch_up_skip_runs_no_tick_missed_for_longer_than_the_grace() -> None:
    rules = [ScheduleRule(cron="0 3 * * *", catch_up="skip")]
    late = plan_tick(rules, due=at("2026-12-06T03:00"), now=at("2026-12-06T09:00"),
                     previous_running=False)  # fmt: skip
    assert (late.run, late.next, late.missed) == (None, at("2026-12-07T03:00"), True)
    slightly = at("2026-12-06T03:00") + MISSED_AFTER - timedelta(seconds=1)
    on_time = plan_tick(rules, due=at("2026-12-06T03:00"), now=slightly, previous_running=False)
    assert (on_time.run, on_time.missed) == (at("2026-12-06T03:00"), False)


def test_each_rule_keeps_its_own_catch_up_policy() -> None:
    rules = [ScheduleRule(cron="0 3 * * *", catch_up="last"), ScheduleRule(every=60.0,
             catch_up="skip")]  # fmt: skip
    plan = plan_tick(rules, due=at("2026-12-06T02:59"), now=at("2026-12-06T09:00:30"),
                     previous_running=False)  # fmt: skip
    # every 60s: its 09:00 tick is 30 s old, within the grace: it runs (the latest candidate).
    assert plan.run == at("2026-12-06T09:00")
    skip_only = [ScheduleRule(every=60.0, catch_up="skip")]
    assert plan_tick(skip_only, due=at("2026-12-06T02:59"), now=at("2026-12-06T09:00:30"),
                     previous_running=False).missed  # fmt: skip


def test_overlap_skip_runs_nothing_while_the_previous_run_runs() -> None:
    rules = [ScheduleRule(every=60.0, overlap="skip")]
    due, now = at("2026-12-06T20:00"), at("2026-12-06T20:00:00.1")
    busy = plan_tick(rules, due=due, now=now, previous_running=True)
    assert (busy.run, busy.next, busy.overlapped) == (None, at("2026-12-06T20:01"), True)
    free = plan_tick(rules, due=due, now=now, previous_running=False)
    assert (free.run, free.overlapped) == (due, False)
    allowed = plan_tick([ScheduleRule(every=60.0)], due=due, now=now, previous_running=True)
    assert allowed.run == due


def test_a_ticks_run_id_names_the_schedule_and_the_instant() -> None:
    tick = at("2026-12-06T20:00:00.250")
    assert tick_key("nightly", tick) == "schedule:nightly:2026-12-06T20:00:00.250Z"
    assert run_id("nightly", tick) == run_id("nightly", tick)
    assert run_id("nightly", tick) != run_id("nightly", tick + timedelta(seconds=1))
    assert run_id("nightly", tick) != run_id("other", tick)
