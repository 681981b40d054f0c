"""Finding dependency cycles among jobs, reported as readable paths (``a -> b -> a``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from actors.definitions._problems import Path, ProblemLog

# job -> its upstream jobs in the order written, each with the location of that `needs` entry.
Edges = Mapping[str, Sequence[tuple[str, Path]]]


def report_cycles(edges: Edges, log: ProblemLog) -> None:
    """Log one problem per cycle found; every job caught in a cycle appears in some report."""
    in_cycle = _jobs_on_or_behind_cycles(edges)
    seen: set[str] = set()
    for start in edges:
        if start not in in_cycle or start in seen:
            continue
        cycle = _walk_to_cycle(start, edges, in_cycle, seen)
        if cycle:
            _report(cycle, edges, log)


def _jobs_on_or_behind_cycles(edges: Edges) -> set[str]:
    """Jobs that can never become ready: what is left after peeling off ready jobs (Kahn)."""
    waiting = {job: {up for up, _ in ups if up in edges} for job, ups in edges.items()}
    ready = [job for job, ups in waiting.items() if not ups]
    downstream: dict[str, list[str]] = {job: [] for job in edges}
    for job, ups in waiting.items():
        for up in ups:
            downstream[up].append(job)
    done: set[str] = set()
    while ready:
        job = ready.pop()
        done.add(job)
        for child in downstream[job]:
            waiting[child].discard(job)
            if not waiting[child]:
                ready.append(child)
    return set(edges) - done


def _walk_to_cycle(start: str, edges: Edges, stuck: set[str], seen: set[str]) -> list[str]:
    """Follow upstream edges inside ``stuck`` until a job repeats; the loop is a cycle.

    Every stuck job has an upstream that is stuck too, so the walk cannot dead-end. If it runs
    into a job seen on an earlier walk, that cycle was already reported and nothing new is.
    """
    order: list[str] = []
    position: dict[str, int] = {}
    job = start
    while job not in position:
        if job in seen:
            seen.update(order)
            return []
        position[job] = len(order)
        order.append(job)
        job = next(up for up, _ in edges[job] if up in stuck)
    seen.update(order)
    return order[position[job] :]


def _report(cycle: list[str], edges: Edges, log: ProblemLog) -> None:
    # Start the printed cycle at the job written first, so the message is stable.
    rank = {job: index for index, job in enumerate(edges)}
    first = min(range(len(cycle)), key=lambda index: rank[cycle[index]])
    ordered = cycle[first:] + cycle[:first]
    following = ordered[1] if len(ordered) > 1 else ordered[0]
    where = next(path for up, path in edges[ordered[0]] if up == following)
    shown = " -> ".join([*ordered, ordered[0]])
    log.add(where, f"dependency cycle {shown} (each job needs the next)")
