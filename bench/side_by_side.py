"""S1 and S3 beside the thin loop and Celery, in one run, runs alternating.

The machine is shared and noisy, so a figure alone says little; what the targets compare is
ratios measured together: each repeat runs jetwork, then the thin loop (``bench.thin_loop``, S1
only), then Celery (``bench.celery_peer``), so that noise hits all alike. Each side keeps its
processes up for the whole benchmark. The ratios, with their targets (issue 11), are notes of
jetwork's result starting with ``ratio:``; ``summary`` lists them at the end of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Final

from bench import celery_peer, throughput
from bench.celery_peer import CeleryPeer
from bench.common import NOOP, Deployment
from bench.report import Result, median_of
from bench.thin_loop import ThinLoop

S1_THIN_SHARE: Final = 0.40  # S1 ≥ 40% of the thin loop
S1_CELERY: Final = 3.0  # S1 ≥ 3x Celery (at the headline sync interval)
S1_CELERY_ALWAYS: Final = 1.5  # S1 at `sync always` ≥ 1.5x Celery
FAN_OUT_CELERY: Final = 5.0  # S3 fan-out ≥ 5x Celery's chord
CHAINS_CELERY: Final = 3.0  # S3 100 chains x 10 ≥ 3x Celery's chains
RATIO: Final = "ratio: "


@dataclass
class Peers:
    """What jetwork is measured beside; ``missing`` says why Celery is not there."""

    thin: ThinLoop | None = None
    celery: CeleryPeer | None = None
    missing: str = ""


@asynccontextmanager
async def peers(*, sync_interval: str, thin: bool, celery: bool) -> AsyncIterator[Peers]:
    """The thin loop (at ``sync_interval``) and Celery when wanted and available, warmed up."""
    found = Peers()
    async with AsyncExitStack() as stack:
        if thin:
            found.thin = ThinLoop(sync_interval=sync_interval)
            stack.push_async_callback(found.thin.close)
            await found.thin.start()
            await found.thin.run(1_000)  # warm-up
        if celery:
            where = celery_peer.find()
            if isinstance(where, str):
                found.missing = f"{where}; {celery_peer.HOW_TO_ENABLE}"
                print(found.missing, flush=True)
            else:
                found.celery = CeleryPeer(*where)
                stack.push_async_callback(found.celery.close)
                await found.celery.start()
        yield found


def compare(
    ours: Result,
    theirs: Result,
    *,
    name: str,
    target: float,
    share: bool,
    pairs: list[tuple[Result, Result]] | None = None,
) -> None:
    """Note ``ours`` ÷ ``theirs`` (jobs/s, the medians) on ``ours``, with the target and whether
    it is met; with several alternating ``pairs``, each pair's ratio too (the load drifts)."""
    ratio = ours.figures["jobs/s"] / theirs.figures["jobs/s"]
    ours.figures[f"÷ {name}"] = round(ratio, 3)

    def said(value: float) -> str:
        return f"{value:.0%}" if share else f"{value:.2f}x"

    wanted = f"≥ {target:.0%}" if share else f"≥ {target:g}x"
    verdict = "met" if ratio >= target else "not met"
    each = ""
    if pairs and len(pairs) > 1:
        ratios = [a.figures["jobs/s"] / b.figures["jobs/s"] for a, b in pairs]
        each = f"; run by run {', '.join(said(r) for r in ratios)}"
    ours.notes.append(
        f"{RATIO}{said(ratio)}{' of' if share else ''} {name} ({theirs.figures['jobs/s']:,.0f} "
        f"jobs/s in the same run{each}); target {wanted}: {verdict}"
    )


def _median(runs: list[Result]) -> Result:
    return median_of(runs, "jobs/s")


async def s1(
    dep: Deployment,
    found: Peers,
    *,
    jobs: int,
    repeats: int,
    variant: str,
    thin: bool = True,
    celery_target: float = S1_CELERY,
) -> list[Result]:
    """S1 ``repeats`` times, each followed by the thin loop's and Celery's run of ``jobs``."""
    ours: list[Result] = []
    thins: list[Result] = []
    celeries: list[Result] = []
    for _ in range(repeats):
        ours.append(await throughput.independent(dep, NOOP, jobs, variant=variant))
        if thin and found.thin is not None:
            thins.append(await found.thin.run(jobs))
        if found.celery is not None:
            celeries.append(await found.celery.run("independent", str(jobs)))
    result = _median(ours)
    results = [result]
    if thins:
        results.append(_median(thins))
        compare(
            result,
            results[-1],
            name="the thin loop",
            target=S1_THIN_SHARE,
            share=True,
            pairs=list(zip(ours, thins, strict=True)),
        )
    if celeries:
        results.append(_median(celeries))
        compare(
            result,
            results[-1],
            name="Celery",
            target=celery_target,
            share=False,
            pairs=list(zip(ours, celeries, strict=True)),
        )
    elif found.missing:
        result.notes.append(found.missing)
    return results


async def s3(dep: Deployment, found: Peers, *, width: int, repeats: int) -> list[Result]:
    """The fan-out/in and the chains, each run followed by Celery's chord and chains."""
    fans: list[Result] = []
    chords: list[Result] = []
    for _ in range(repeats):
        fans.append(await throughput.fan_out_in(dep, width))
        if found.celery is not None:
            chords.append(await found.celery.run("fanout", str(width)))
    chains: list[Result] = []
    celery_chains: list[Result] = []
    for _ in range(repeats):
        chains.append(await throughput.chains(dep, 100, 10))
        if found.celery is not None:
            celery_chains.append(await found.celery.run("chains", "100", "10"))
    fan, chain = _median(fans), _median(chains)
    results = [fan, chain]
    if chords:
        results.insert(1, _median(chords))
        compare(
            fan,
            results[1],
            name="Celery's chord",
            target=FAN_OUT_CELERY,
            share=False,
            pairs=list(zip(fans, chords, strict=True)),
        )
    if celery_chains:
        results.append(_median(celery_chains))
        compare(
            chain,
            results[-1],
            name="Celery's chains",
            target=CHAINS_CELERY,
            share=False,
            pairs=list(zip(chains, celery_chains, strict=True)),
        )
    if found.missing:
        fan.notes.append(found.missing)
    results.append(await throughput.idle_hops(dep, runs=10))
    return results


def summary(results: list[Result]) -> str:
    """Every ratio of the run, one line each."""
    lines = [
        f"{r.scenario:<4}{r.variant[:60]:<62}{note.removeprefix(RATIO)}"
        for r in results
        for note in r.notes
        if note.startswith(RATIO)
    ]
    return "\n".join(lines)
