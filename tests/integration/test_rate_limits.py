"""Rate limits on a real nats-server: never more starts in a window than the limit, however
many workers race; an operator's limit followed by running workers, and lifted."""

from __future__ import annotations

import asyncio
import uuid

from click.testing import CliRunner
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from events import subjects
from events.catalog import JobSpec, JobStarted, JobSucceeded
from events.definition import RateLimit
from sdk.cli import main
from sdk.client import Client
from sdk.worker import Worker
from sdk.worker.rate_limits import RateLimiter, counter_key, limited_as, window_of
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running


def unique_label() -> str:
    return f"rl-{uuid.uuid4().hex[:10]}"


async def counted(nc: NATS, spec: JobSpec, per: float, window: int) -> int:
    kv = await nc.jetstream().key_value(subjects.KV_RATES)
    try:
        entry = await kv.get(counter_key(*limited_as(spec), per, window))
    except KeyNotFoundError:
        return 0
    return int(entry.value or 0)


async def test_racing_admissions_never_exceed_the_limit_in_a_window(clean_nats: NATS) -> None:
    clock = [3600.0 * 1000 + 1.0]  # a fixed instant: every admission falls in one window
    limiters = [RateLimiter(clock=lambda: clock[0]) for _ in range(4)]
    for limiter in limiters:
        await limiter.start(clean_nats.jetstream())
    spec = JobSpec(run="true", labels=(unique_label(),), rate_limit=RateLimit(limit=5, per=60))
    refusals = await asyncio.gather(*(limiters[n % 4].admit(spec) for n in range(24)))
    assert sum(refusal is None for refusal in refusals) == 5
    refused = [r for r in refusals if r is not None]
    assert all(0 < r.wait <= 5.0 for r in refused)  # released until the window ends, or RECHECK
    assert await counted(clean_nats, spec, 60, window_of(clock[0], 60)) == 5
    clock[0] += 60  # the next window has room again
    assert await limiters[0].admit(spec) is None
    for limiter in limiters:
        await limiter.stop()


async def test_jobs_over_their_limit_wait_for_the_next_window(
    harness: JobsHarness, nats_url: str, clean_nats: NATS
) -> None:
    label, rate = unique_label(), RateLimit(limit=3, per=1)

    def worker() -> Worker:
        return Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=4))

    async with running(worker(), worker()):
        for n in range(9):
            await harness.queue("wf", f"j{n}", run="true", labels=[label], rate_limit=rate)

        async def all_succeeded() -> bool:
            return all([await harness.events("wf", f"j{n}", JobSucceeded) for n in range(9)])

        await assert_eventually(all_succeeded, timeout=30, interval=0.1)
    starts = [await harness.events("wf", f"j{n}", JobStarted) for n in range(9)]
    windows = {window_of(s[0].started_at.timestamp(), 1.0) for s in starts}
    assert len(windows) >= 3  # 9 starts, at most 3 a window
    spec = JobSpec(run="true", labels=(label,))
    # A start is counted when admitted, just before its claim: maybe in the window before.
    counts = [
        await counted(clean_nats, spec, 1.0, w) for w in range(min(windows) - 1, max(windows) + 2)
    ]
    assert max(counts) <= 3 and sum(counts) >= 9, counts


async def test_an_operators_limit_holds_back_starts_until_it_is_lifted(
    harness: JobsHarness, nats_url: str, clean_nats: NATS
) -> None:
    label = unique_label()
    client = Client(clean_nats)
    runner = CliRunner()
    args = ["limits", "set", "--labels", label, "--limit", "1", "--per", "1h", "--reason", "quota"]
    done = await asyncio.to_thread(runner.invoke, main, [*args, "--nats", nats_url])
    assert done.exit_code == 0, done.output
    async with running(Worker(fast_config(nats_url, labels=frozenset([label])))):
        await harness.queue("wf", "first", run="true", labels=[label])
        await harness.queue("wf", "second", run="true", labels=[label])

        async def one_ran() -> bool:
            return bool(await harness.events("wf", "first", JobSucceeded)
                        or await harness.events("wf", "second", JobSucceeded))  # fmt: skip

        await assert_eventually(one_ran, timeout=15)
        [view] = await client.rate_limits()
        assert (view.kind, view.limit, view.started_in_window, view.full) == ("labels", 1, 1, True)
        listed = await asyncio.to_thread(
            runner.invoke, main, ["limits", "--json", "--nats", nats_url]
        )
        assert '"full": true' in listed.output, listed.output
        # Held back: the window lasts an hour; lifting the limit lets the other one start.
        assert await client.delete_rate_limit(labels=(label,)) is True

        async def both_ran() -> bool:
            return bool(await harness.events("wf", "first", JobSucceeded)
                        and await harness.events("wf", "second", JobSucceeded))  # fmt: skip

        await assert_eventually(both_ran, timeout=20)
    assert await client.rate_limits() == []
    assert await client.delete_rate_limit(labels=(label,)) is False
