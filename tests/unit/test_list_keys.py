"""The secondary index subjects (``projections.keys``): a view is listed under exactly the
subjects a filter it matches names, and nowhere a status filter reads."""

from __future__ import annotations

from datetime import UTC, datetime

from events.catalog import ParentLink
from projections import keys
from projections.search import ListFilter
from projections.views import WorkflowView

STARTED = datetime(2026, 12, 6, 14, 25, 37, tzinfo=UTC)


def _view(**fields: object) -> WorkflowView:
    fields = {"started_at": STARTED, **fields}
    return WorkflowView(workflow_id="wf-1", name="etl", status="running", **fields)  # type: ignore[arg-type]


def test_a_view_is_listed_under_every_filter_it_matches() -> None:
    view = _view(
        inputs={"env": "prod", "n": 3, "tags": ["a", "b"]},
        labels=("gpu", "linux"),
        parent=ParentLink(workflow_id="wf-0", job="fan", attempt=1),
    )
    listed = set(keys.key_subjects(7, view))
    where = ListFilter(
        inputs={"env": "prod", "n": "3", "tags": '["a","b"]'}, labels=("gpu",), parent="wf-0"
    )
    assert set(keys.filter_subjects(7, where)) <= listed
    second = int(STARTED.timestamp())
    hour, minute = second // 3600, second // 60
    assert {
        f"wfkey.g7.t0.{hour}",
        f"wfkey.g7.t1.{hour}.{minute}",
        f"wfkey.g7.t2.{minute}.{second}",
    } <= listed
    assert len(listed) == 3 + 2 + 1 + 3
    # Each bucket is listed by the filter of the buckets under the one above it.
    assert keys.time_filter(7, 0, None) == "wfkey.g7.t0.*"
    assert keys.time_filter(7, 2, minute) == f"wfkey.g7.t2.{minute}.*"


def test_a_filter_it_does_not_match_names_a_subject_it_is_not_under() -> None:
    listed = set(keys.key_subjects(1, _view(inputs={"env": "prod"}, labels=("gpu",))))
    for where in (
        ListFilter(inputs={"env": "dev"}),
        ListFilter(inputs={"en": "vprod"}),  # the key and the value stay apart
        ListFilter(labels=("linux",)),
        ListFilter(parent="wf-0"),
    ):
        assert not set(keys.filter_subjects(1, where)) & listed, where


def test_a_view_without_inputs_labels_or_parent_has_only_its_start() -> None:
    assert [s.split(".")[2] for s in keys.key_subjects(1, _view())] == ["t0", "t1", "t2"]
    assert keys.key_subjects(1, _view(started_at=None)) == []


def test_secondary_subjects_are_apart_from_the_status_index() -> None:
    for subject in keys.key_subjects(1, _view(inputs={"a": "b"}, labels=("x",))):
        assert subject.startswith("wfkey.g1."), subject


def test_the_sequences_named_by_a_view_header() -> None:
    assert keys.decode_seqs(keys.encode_seqs([3, 17, 20])) == (3, 17, 20)
    assert keys.decode_seqs(None) == ()
    assert keys.decode_seqs("3,x") == ()
