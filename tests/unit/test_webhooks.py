"""Webhook waits (``wait_for: {webhook: {match}}``), no I/O: the rendered match, a matching and a
non-matching body, a redelivery, a stale hook; and the hook tokens (``events.hooks``)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import workflow
from actors.definitions import load_workflow_text
from actors.engine.reactions import Control, Fired, react
from actors.engine.timers import WaitTimeoutTimer
from actors.signals import match_problems
from events.catalog import JobSucceeded, JobWaiting
from events.hooks import Hook, HookSigner
from events.requests import HookRequest
from tests.unit.given_when_then import at
from tests.unit.test_reactions import History
from tests.unit.test_workflow_actor import WF, kinds, started

PAY = load_workflow_text(
    """\
name: pay
inputs:
  order: {required: true}
jobs:
  paid:
    wait_for:
      webhook: {match: {type: payment_received, order: "${{ inputs.order }}"}}
      timeout: 1h
  ship:
    needs: [paid]
    run: ship ${{ needs.paid.outputs.amount }}
""",
    source="pay.yaml",
)


def hook(body: dict[str, Any], attempt: int = 1) -> Control:
    return Control(HookRequest(workflow_id=WF, job="paid", attempt=attempt, body=body))


def waiting_state() -> History:
    history = History(started(PAY, order="A-7"))
    decided = react(history.state, [], at(1)).decided
    history.add(*decided)
    return history


def test_the_wait_starts_with_its_match_rendered_and_its_timeout_armed() -> None:
    history = History(started(PAY, order="A-7"))
    reaction = react(history.state, [], at(1))
    assert kinds(reaction.decided) == [("JobWaiting", "paid")]
    waiting = reaction.decided[0]
    assert isinstance(waiting, JobWaiting)
    assert waiting.match == {"type": "payment_received", "order": "A-7"}
    assert waiting.signal is None
    assert reaction.timers == [
        WaitTimeoutTimer(workflow_id=WF, job="paid", attempt=1, due=at(3601))
    ]


def test_a_matching_body_succeeds_the_job_with_the_body_as_outputs() -> None:
    body = {"type": "payment_received", "order": "A-7", "amount": 12.5}
    reaction = react(waiting_state().state, [hook(body)], at(5))
    assert kinds(reaction.decided) == [("JobSucceeded", "paid"), ("JobQueued", "ship")]
    done = reaction.decided[0]
    assert isinstance(done, JobSucceeded) and done.result == body
    assert done.outputs == {"type": "payment_received", "order": "A-7", "amount": "12.5"}
    assert reaction.decided[1].spec.run == "ship 12.5"  # type: ignore[attr-defined]


def test_a_body_that_does_not_match_is_refused_with_why() -> None:
    reaction = react(waiting_state().state, [hook({"type": "refund"})], at(5))
    assert reaction.decided == []
    assert reaction.refused == {
        0: "cannot hook workflow 'wf-1': the body does not match: type is \"refund\", "
        'expected "payment_received"; order is missing (expected "A-7")'
    }


def test_the_same_body_again_changes_nothing_and_a_stale_hook_is_refused() -> None:
    history = waiting_state()
    body = {"type": "payment_received", "order": "A-7"}
    history.add(*react(history.state, [hook(body)], at(5)).decided)
    again = react(history.state, [hook(body)], at(6))
    assert again.decided == [] and again.applied == {0: False}
    other = react(history.state, [hook({**body, "x": 1})], at(6))
    assert other.refused == {
        0: "cannot hook workflow 'wf-1': job 'paid' no longer waits for this hook (it is succeeded)"
    }


def test_the_timeout_of_a_webhook_wait_says_what_did_not_come() -> None:
    timer = WaitTimeoutTimer(workflow_id=WF, job="paid", attempt=1, due=at(3601))
    reaction = react(waiting_state().state, [Fired(timer)], at(3601))
    assert reaction.decided[0].error == (  # type: ignore[attr-defined]
        "no matching webhook request arrived within 1h (wait_for timeout)"
    )


@pytest.mark.parametrize(
    ("match", "body", "problems"),
    [
        ({"order": "42"}, {"order": 42}, []),
        ({"n": 1}, {"n": 1.0}, []),
        ({"ok": True}, {"ok": 1}, ["ok is 1, expected true"]),
        ({"a": {"b": 1}}, {"a": {"b": 1}, "c": 2}, []),
        ({"a": "x"}, {}, ['a is missing (expected "x")']),
    ],
)
def test_match_problems(match: dict[str, Any], body: dict[str, Any], problems: list[str]) -> None:
    assert match_problems(match, body) == problems


def test_hook_tokens_verify_only_under_their_secret() -> None:
    signer = HookSigner(b"s" * 32)
    token = signer.token(Hook(WF, "paid", 2))
    assert signer.verify(token) == Hook(WF, "paid", 2)
    assert signer.path(Hook(WF, "paid", 2)) == "/api/hooks/" + token
    assert HookSigner(b"t" * 32).verify(token) is None  # a rotated secret
    payload, mac = token.split(".")
    forged = HookSigner(b"s" * 32).token(Hook(WF, "paid", 3)).split(".")[0]
    assert signer.verify(f"{forged}.{mac}") is None
    assert signer.verify("garbage") is None and signer.verify(payload + ".!!") is None


def test_a_signal_to_a_webhook_job_is_refused() -> None:
    from actors.commands import SignalWorkflow
    from events.errors import CommandRefused

    with pytest.raises(CommandRefused, match="no job of it waits"):
        workflow.decide(
            waiting_state().state, SignalWorkflow(workflow_id=WF, by="x", name="paid", now=at(2))
        )


def test_the_webhook_example_and_the_python_builder_define_the_same_workflow() -> None:
    from pathlib import Path

    from actors.definitions import load_workflow_file
    from sdk.builder import WaitFor, Workflow

    example = load_workflow_file(Path(__file__).parents[2] / "examples" / "webhook.yaml")
    wf = Workflow("webhook")
    order = wf.input("order", required=True, description="the order id the payment must name")
    match = {"type": "payment_received", "order": order}
    paid = wf.job("paid", wait_for=WaitFor(webhook_match=match, timeout="1h"))
    wf.job("ship", needs=[paid], run=f'echo "shipping {order}, paid {paid.output("amount")}"')
    assert wf.build() == example
