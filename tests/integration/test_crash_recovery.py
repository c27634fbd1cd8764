"""Crash recovery: processes killed with SIGKILL mid-way lose nothing and apply nothing twice.

The dispatcher runs in a child process on a SQLite file and sends over real
SMTP to an SmtpSink in this process. One address stalls at DATA, so the child
is reliably mid-batch when it is killed: some messages of its last claimed
batch have reached the sink, one is on the wire, the rest are claimed but
unsent. A fresh dispatcher then finishes the broadcast: the in-flight ones
only after the lease, and with their original Message-IDs.

The same for a process creating a broadcast (killed between its recipients'
chunks) and for bounce ingestion from a Maildir (killed after its first
batch committed).
"""

from __future__ import annotations

import collections
import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from reliability_support import (
    T0,
    address,
    assert_spec_invariants,
    create,
    open_service,
    transport_outcomes,
)

from broadcast_adapters.bounces.sources import MaildirSource
from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain import DeliveryPolicy, DeliveryStatus
from broadcast_domain.domain.events import Bounced
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport
from broadcast_domain.testing.smtp_server import SmtpSink

WORKER = Path(__file__).with_name("reliability_worker.py")
LEASE = timedelta(minutes=1)
RECIPIENTS = 120
BATCH = 25
STALLED = 60  # in the third batch, after ten of its messages went through


def start_worker(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """Run the worker script in a fresh interpreter with this process's import path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def wait_until(condition: object, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until ``condition()`` holds; fail with the child's output if it exits or hangs."""
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            pytest.fail(f"the worker exited early ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the worker never got there:\n{log.read_text()}")
        time.sleep(0.005)


def test_dispatcher_killed_mid_broadcast_loses_nothing_and_resends_only_in_flight(
    tmp_path: Path, durable_store_url: str
) -> None:
    """After SIGKILL and a restart past the lease, each recipient has one outcome and
    only messages in flight at the kill reach the server twice, with the same Message-ID."""
    url = durable_store_url
    clock = FakeClock(T0)
    policy = DeliveryPolicy(lease=LEASE)
    svc = open_service(url, clock, policy=policy)
    bid = create(svc, RECIPIENTS)
    svc.close()
    addresses = [address(i) for i in range(RECIPIENTS)]
    stalled = address(STALLED)

    with SmtpSink() as sink:
        sink.stall(stalled, 300, at="DATA")
        log = tmp_path / "worker.log"
        child = start_worker(
            "smtp-dispatch",
            url,
            str(sink.port),
            "0",
            str(LEASE.total_seconds()),
            str(BATCH),
            log=log,
        )
        # The stalled message is on the wire once its RCPT was answered and the
        # ten before it in its batch are in.
        wait_until(
            lambda: sink.attempts(stalled) == 1 and len(sink.messages) >= STALLED,
            child,
            log,
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        sink.accept(stalled)
        received_before = [m.recipient for m in sink.messages]

        svc = open_service(url, clock, policy=policy)
        in_flight = {
            a
            for a in addresses
            if (r := Recipient.fold(svc.history(bid, a))) is not None  # type: ignore[arg-type]
            and r.status is DeliveryStatus.SENDING
        }
        assert stalled in in_flight
        assert len(in_flight) <= BATCH
        assert set(received_before) <= set(addresses)

        with SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=30) as transport:
            # Within the lease the claimed ones are left alone: their owner may be alive.
            svc.dispatch_due(transport)
            assert svc.summary(bid).sending == len(in_flight)
            resent_early = {m.recipient for m in sink.messages[len(received_before) :]}
            assert not resent_early & in_flight
            clock.advance(LEASE + timedelta(seconds=1))
            svc.dispatch_due(transport)

        s = svc.summary(bid)
        assert (s.succeeded, s.sending, s.scheduled) == (RECIPIENTS, 0, 0)
        assert_spec_invariants(svc, bid, addresses)
        for a in addresses:
            assert len(transport_outcomes(svc.history(bid, a))) == 1

        by_address = collections.defaultdict(list)
        for m in sink.messages:
            by_address[m.recipient].append(m.message_id)
        assert set(by_address) == set(addresses), "a recipient never reached the server"
        twice = {a for a, ids in by_address.items() if len(ids) > 1}
        assert twice <= in_flight
        # exactly those that reached the server before the kill without their outcome recorded
        assert twice == set(received_before) & in_flight
        assert twice, "the kill was meant to leave delivered-but-unrecorded messages"
        assert all(len(set(by_address[a])) == 1 for a in twice), "a resend changed Message-ID"
        assert all(len(ids) <= 2 for ids in by_address.values())
        svc.close()


def test_a_broadcast_killed_while_being_created_is_neither_visible_nor_sendable(
    tmp_path: Path, durable_store_url: str
) -> None:
    """SIGKILL after some recipients were written leaves no broadcast to list or send,
    and the projections still equal a replay of the log."""
    url = durable_store_url
    svc = open_service(url, FakeClock(T0))
    log = tmp_path / "create.log"
    child = start_worker("create", url, "30000", log=log)
    # The recipients go in chunks of 10,000 before the broadcast's own event.
    wait_until(lambda: svc.events.max_position() >= 10_000, child, log)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert svc.events.max_position() < 30_001, "the child finished before it was killed"
    assert svc.list_broadcasts("support").total == 0
    with SmtpSink() as sink, SmtpTransport("127.0.0.1", sink.port) as transport:
        assert svc.dispatch_due(transport).sent == 0
        assert sink.messages == []
    assert svc.verify_projections() == []
    bid = create(svc, 3)
    assert svc.list_broadcasts("support").total == 1
    assert svc.summary(bid).recipients == 3
    svc.close()


def test_bounce_ingestion_killed_midway_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, durable_store_url: str
) -> None:
    """SIGKILL during ingest from a Maildir, then a second run: every DSN is applied to its
    recipient exactly once (copies and re-read messages are duplicates) and none is left."""
    url = durable_store_url
    clock = FakeClock(T0)
    svc = open_service(url, clock)
    count = 600
    bid = create(svc, count)
    transport = FakeTransport()
    assert svc.dispatch_due(transport).succeeded == count
    folder = tmp_path / "bounces"
    box = mailbox.Maildir(folder, create=True)
    # Every recipient bounces once; the first 60 DSNs arrive twice.
    for message in [*transport.sent, *transport.sent[:60]]:
        box.add(mailbox.MaildirMessage(build_dsn(message)))
    base = svc.events.max_position()

    log = tmp_path / "ingest.log"
    child = start_worker("ingest", url, str(folder), log=log)
    wait_until(lambda: svc.events.max_position() > base, child, log)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    left = len(list(MaildirSource(folder)))
    # A batch was committed (the wait above); the kill may land before any of its
    # messages was marked done (all are left: the hardest case) or after some.
    assert left > 0, "the child finished before it was killed"

    second = svc.ingest(MaildirSource(folder))
    assert second["messages"] == left
    assert second["set_aside"] == 0
    assert list(MaildirSource(folder)) == []
    addresses = [address(i) for i in range(count)]
    for a in addresses:
        bounced = [e for e in svc.history(bid, a) if isinstance(e, Bounced)]
        assert len(bounced) == 1, f"{a} has {len(bounced)} bounces"
    s = svc.summary(bid)
    assert (s.errors, s.succeeded) == (count, 0)
    assert_spec_invariants(svc, bid, addresses)
    svc.close()
