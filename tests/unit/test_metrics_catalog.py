"""The metrics' names as dashboards and docs use them: every one they name exists, and the
``--metrics`` address is checked with a clear message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from telemetry import metrics
from telemetry.endpoint import InvalidMetricsAddress, parse_listen

DOCS = Path(__file__).resolve().parents[2] / "docs"
_NAME = re.compile(r"\bjetwork_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def registered() -> set[str]:
    assert metrics.JOBS_STARTED is not None  # the families are registered on import
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES)
    return {name for name in names if name.startswith("jetwork_")}


def named_in(text: str) -> set[str]:
    return set(_NAME.findall(text))


def test_every_metric_the_dashboard_queries_exists() -> None:
    dashboard = json.loads((DOCS / "grafana" / "jetwork-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    assert named_in(exprs) - registered() == set()


def test_every_metric_the_docs_name_exists_and_every_family_is_documented() -> None:
    doc = (DOCS / "metrics.md").read_text()
    assert named_in(doc) - registered() == set()
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("jetwork_")}
    undocumented = {name for name in families if name not in doc}
    assert undocumented == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:9102", ("127.0.0.1", 9102)), (":9102", ("0.0.0.0", 9102)),
     ("[::1]:0", ("::1", 0)), ("localhost:65535", ("localhost", 65535))],
)  # fmt: skip
def test_metrics_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9102", "host:", "host:http", "host:70000", ""])
def test_a_bad_metrics_address_says_what_is_expected(value: str) -> None:
    with pytest.raises(InvalidMetricsAddress, match="expected HOST:PORT"):
        parse_listen(value)
