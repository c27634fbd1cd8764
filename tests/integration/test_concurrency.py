"""Concurrency: dispatch, bounce reports, acknowledgement, listing and export at once.

Four kinds of worker run together on one 2,000-recipient broadcast (the
lister also exports the result CSV): as
threads on one service, and as separate processes on one store (with
two dispatchers, so that they compete for the same recipients). 2,000 rather
than 10,000 keeps the test under half a minute on two cores; the races are
per batch of 50 claims, so a longer broadcast only repeats them.

The dispatch transport refuses every address whose number ends in 3 (550), so
there are errors to acknowledge while the bounce worker turns every fifth
success into an error (half through raw DSN e-mails, half through
normalised reports).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reliability_support import T0, address, assert_spec_invariants, create, open_service
from reliability_worker import ROLES

from broadcast_domain import BroadcastStatus
from broadcast_domain.testing.clock import FakeClock

WORKER = Path(__file__).with_name("reliability_worker.py")
RECIPIENTS = 2_000


def expected_errors() -> set[str]:
    """Refused at hand-over (number ends in 3) or reported bounced (every fifth other one)."""
    return {address(i) for i in range(RECIPIENTS) if str(i).endswith("3") or i % 5 == 0}


def handed_over(out_files: list[Path]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for out in out_files:
        for line in out.read_text().splitlines():
            counts[line.split()[0]] += 1
    return counts


def check_end_state(url: str, out_files: list[Path]) -> None:
    """Counts add up, each recipient has one outcome and was handed over exactly once."""
    svc = open_service(url, FakeClock(T0))
    try:
        bid = svc.list_broadcasts("support").items[0].broadcast_id
        addresses = [address(i) for i in range(RECIPIENTS)]
        s = svc.summary(bid)
        assert s.status is BroadcastStatus.SENT
        assert s.errors == len(expected_errors())
        assert s.succeeded == RECIPIENTS - s.errors
        sends = handed_over(out_files)
        assert set(sends) == set(addresses), "a recipient was never sent"
        assert max(sends.values()) == 1, "a recipient was sent twice"
        assert_spec_invariants(svc, bid, addresses)
    finally:
        svc.close()


def test_four_workers_as_threads_on_one_service_keep_the_invariants(
    tmp_path: Path, durable_store_url: str
) -> None:
    """Dispatch, bounces, acknowledgement, listing and export in threads on one service."""
    url = durable_store_url
    svc = open_service(url, FakeClock(T0))
    create(svc, RECIPIENTS)
    out = tmp_path / "sent.txt"
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(ROLES["fake-dispatch"], svc, str(out)),
                pool.submit(ROLES["bounce"], svc),
                pool.submit(ROLES["acknowledge"], svc),
                pool.submit(ROLES["list"], svc),
            ]
            for future in futures:
                future.result(timeout=600)
    finally:
        svc.close()
    check_end_state(url, [out])


def test_four_kinds_of_worker_as_processes_on_one_shared_store_keep_the_invariants(
    tmp_path: Path, durable_store_url: str
) -> None:
    """Two dispatchers, a bounce reporter, an acknowledger and a lister, each its own process."""
    url = durable_store_url
    svc = open_service(url, FakeClock(T0))
    create(svc, RECIPIENTS)
    svc.close()
    outs = [tmp_path / "sent-1.txt", tmp_path / "sent-2.txt"]
    jobs = [
        ["fake-dispatch", url, str(outs[0])],
        ["fake-dispatch", url, str(outs[1])],
        ["bounce", url],
        ["acknowledge", url],
        ["list", url],
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    children = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *job],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        for job in jobs
    ]
    for job, child in zip(jobs, children, strict=True):
        output, _ = child.communicate(timeout=600)
        assert child.returncode == 0, f"{job[0]} failed:\n{output.decode(errors='replace')}"
    check_end_state(url, outs)
