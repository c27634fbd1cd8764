"""Messages per second handed to a local SmtpSink running in its own process.

Compares a plain one-connection smtplib loop with SmtpTransport at 1 and N
connections, with and without PIPELINING offered by the server.

    python benchmarks/bench_smtp.py [--messages 2000] [--connections 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import smtplib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from multiprocessing.synchronize import Event

from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain.domain.messages import build_message, make_message_id
from broadcast_domain.domain.values import Contact
from broadcast_domain.ports import OutgoingMessage
from broadcast_domain.testing.smtp_server import SmtpSink


def serve(pipelining: bool, ports: multiprocessing.Queue[int], stop: Event) -> None:
    with SmtpSink(pipelining=pipelining) as sink:
        ports.put(sink.port)
        stop.wait()


def messages(n: int) -> list[OutgoingMessage]:
    out = []
    for i in range(n):
        contact = Contact(f"user{i}@example.com", last_name="山田", first_name=f"太郎{i}")
        mid = make_message_id("mail.example.com", f"bench.{i}")
        data = build_message(
            sender="news@example.com",
            sender_name="ニュース",
            recipient=contact,
            subject="11月のお知らせ",
            text_body="本文です。\n" * 20,
            html_body=None,
            message_id=mid,
            envelope_from=f"bounces+{i}@mail.example.com",
            date=datetime(2026, 11, 1, tzinfo=UTC),
        )
        out.append(
            OutgoingMessage(str(i), f"bounces+{i}@mail.example.com", contact.address, mid, data)
        )
    return out


def plain_loop(port: int, batch: list[OutgoingMessage]) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for m in batch:
            smtp.sendmail(m.envelope_from, [m.recipient], m.data)


def transport(port: int, batch: list[OutgoingMessage], connections: int) -> None:
    with SmtpTransport("127.0.0.1", port, connections=connections) as t:
        replies = t.send(batch)
    assert all(r.accepted for r in replies), [r for r in replies if not r.accepted][:3]


def compare(variants: list[tuple[str, Callable[[], None]]], n: int, rounds: int) -> None:
    """Best time of each variant, rounds interleaved so load drift hits all alike."""
    best = dict.fromkeys((label for label, _ in variants), float("inf"))
    for _ in range(rounds):
        for label, run in variants:
            start = time.perf_counter()
            run()
            best[label] = min(best[label], time.perf_counter() - start)
    for label, seconds in best.items():
        print(f"{label:<48} {n / seconds:8.0f} messages/s (best of {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batch = messages(args.messages)
    for pipelining in (False, True):
        ports: multiprocessing.Queue[int] = multiprocessing.Queue()
        stop = multiprocessing.Event()
        server = multiprocessing.Process(target=serve, args=(pipelining, ports, stop))
        server.start()
        port = ports.get(timeout=30)
        try:
            mode = "PIPELINING" if pipelining else "no PIPELINING"
            print(f"-- {args.messages} messages, server offers {mode}")
            compare(
                [
                    ("plain smtplib loop, 1 connection", partial(plain_loop, port, batch)),
                    ("SmtpTransport, 1 connection", partial(transport, port, batch, 1)),
                    (
                        f"SmtpTransport, {args.connections} connections",
                        partial(transport, port, batch, args.connections),
                    ),
                ],
                len(batch),
                args.rounds,
            )
        finally:
            stop.set()
            server.join()


if __name__ == "__main__":
    main()
