"""B10: SES notifications through ``POST /webhooks/ses`` vs ``SesWebhook.handle`` called directly.

A broadcast of N recipients is sent (to a fake transport) on a SQLite store,
and one signed SNS notification (signature version 2, RSA-2048, a
certificate made here) is built per accepted message: a permanent bounce
naming the delivery's VERP token. Ours: every notification POSTed, one after
the other, to the web app on uvicorn on 127.0.0.1 (a server process of its
own, ``benchmarks/_b10_server.py``, as a deployment runs it) by an httpx
client that keeps its connection alive. Anchor: the same
kind of notifications (on a fresh store of the same shape) through
``SesWebhook.handle`` + ``record_bounce`` in a plain loop. Both verify every
signature and record every report (each outcome must be ``applied``). Ratio:
our requests/s / the anchor's.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks._common import (
    contacts,
    create_broadcast,
    median_of,
    open_service,
    result,
    scratch_dir,
    timed,
)

GOAL = ">= 0.5"
TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:ses-bounces"
CERT_URL = "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-bench.pem"


class _Loader:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    def load(self, url: str) -> bytes:
        return self.pem


def _certificate(key: Any) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _notification(key: Any, address: str, token: str, n: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    message = json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": address,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": datetime.now(UTC).isoformat(),
                "feedbackId": f"bench-{n}-{secrets.token_hex(4)}",
            },
            "mail": {
                "timestamp": datetime.now(UTC).isoformat(),
                "source": f"bounces+{token}@bench.example.com",
                "messageId": f"bench-message-{n}",
                "destination": [address],
            },
        }
    )
    doc = {
        "Type": "Notification",
        "MessageId": f"bench-{n}",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": message,
        "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
    }
    fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    canonical = "".join(f"{f}\n{doc[f]}\n" for f in fields).encode()
    doc["Signature"] = base64.b64encode(
        key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    return json.dumps(doc).encode()


def _prepared(directory: str, n: int, key: Any) -> tuple[Any, list[bytes]]:
    """A store with N accepted deliveries and one signed bounce notification for each."""
    from broadcast_domain.testing.fakes import FakeTransport

    svc = open_service(directory)
    create_broadcast(svc, contacts(n))
    transport = FakeTransport()
    svc.dispatch_due(transport)
    bodies = []
    for i, message in enumerate(transport.accepted):
        token = message.envelope_from.split("@", 1)[0].split("+", 1)[1]
        bodies.append(_notification(key, message.recipient, token, i))
    return svc, bodies


def _direct(svc: Any, webhook: Any, bodies: list[bytes]) -> float:
    headers = {"x-amz-sns-message-type": "Notification"}

    def loop() -> None:
        for body in bodies:
            now = svc.now()
            for report in webhook.handle(body, headers, now).reports:
                outcome = svc.record_bounce(report, received_at=now)
                assert outcome.kind == "applied", outcome

    return timed(loop)


def _http(directory: str, pem: bytes, bodies: list[bytes]) -> float:
    """Seconds to POST every body to the app served by uvicorn in a process of its own."""
    import httpx

    pem_path = os.path.join(directory, "sns.pem")
    with open(pem_path, "wb") as f:
        f.write(pem)
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._b10_server", directory, "bench.db", pem_path, TOPIC],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("port "), line
        port = int(line.split()[1])
        headers = {"x-amz-sns-message-type": "Notification", "content-type": "text/plain"}
        # TCP_NODELAY: httpx writes the headers and the body separately, and Nagle's
        # algorithm would hold the body until the server's delayed ACK (40 ms).
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=60, transport=nodelay
        ) as http:

            def loop() -> None:
                for body in bodies:
                    response = http.post("/webhooks/ses", content=body, headers=headers)
                    assert response.status_code == 200, response.text
                    assert response.json()["outcomes"] == {"applied": 1}, response.text

            return timed(loop)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def _stack() -> str:
    """Which HTTP parser and event loop uvicorn picks here (it prefers the fast ones)."""
    import importlib.util

    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn with {parser} and {loop}"


def _errors(svc: Any) -> int:
    errors: int = svc.summary(svc.list_broadcasts("support").items[0].broadcast_id).errors
    return errors


def run(quick: bool) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from broadcast_adapters.bounces.webhooks import SesWebhook

    n = 500 if quick else 2_000
    reps = 1 if quick else 3
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _certificate(key)
    ours, anchor = [], []
    for _ in range(reps):
        with scratch_dir() as d:
            svc, bodies = _prepared(d, n, key)
            try:
                webhook = SesWebhook(_Loader(pem), topic_arns=[TOPIC])
                anchor.append(len(bodies) / _direct(svc, webhook, bodies))
                assert _errors(svc) == n
            finally:
                svc.close()
        with scratch_dir() as d:
            svc, bodies = _prepared(d, n, key)
            svc.close()  # the server process opens the store itself
            ours.append(len(bodies) / _http(d, pem, bodies))
            svc = open_service(d)
            try:
                assert _errors(svc) == n
            finally:
                svc.close()
    ours_rate, anchor_rate = median_of(ours), median_of(anchor)
    return result(
        "B10",
        title="SES notifications through POST /webhooks/ses (uvicorn, keep-alive) vs handle()",
        ours=ours_rate,
        anchor=anchor_rate,
        unit="requests/s",
        ratio=ours_rate / anchor_rate,
        goal=GOAL,
        size=f"{n:,} notifications, median of {reps}",
        note=f"server in its own process ({_stack()})",
    )
