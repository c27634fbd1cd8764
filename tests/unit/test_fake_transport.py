"""FakeTransport records what it is given and answers by its rules."""

from __future__ import annotations

from broadcast_domain.testing.contracts import outgoing
from broadcast_domain.testing.fakes import FakeTransport


def test_fake_records_batches_sent_and_accepted() -> None:
    """calls holds each batch, sent every message, accepted only the 250s."""
    fake = FakeTransport(reject=["no@example.com"])
    first = [outgoing("a", "a@example.com"), outgoing("n", "no@example.com")]
    fake.send(first)
    fake.send([outgoing("b", "b@example.com")])
    assert fake.calls == [tuple(first), (fake.sent[2],)]
    assert [m.key for m in fake.sent] == ["a", "n", "b"]
    assert [m.key for m in fake.accepted] == ["a", "b"]
    assert [m.key for m in fake.sent_to("NO@example.com")] == ["n"]


def test_fake_rule_change_replaces_the_previous_rule() -> None:
    """Setting drop after reject for one address makes it dropped, not rejected."""
    fake = FakeTransport(reject=["x@example.com"])
    fake.drop("x@example.com")
    assert fake.send([outgoing("x", "x@example.com")])[0].code == 0
    fake.accept("x@example.com")
    assert fake.send([outgoing("x", "x@example.com")])[0].code == 250


def test_fake_close_is_recorded_and_send_reopens() -> None:
    """close marks the fake closed; a later send marks it open again."""
    with FakeTransport() as fake:
        pass
    assert fake.closed
    fake.send([])
    assert not fake.closed
