"""B10's server process: the web app with an SES webhook on uvicorn, 127.0.0.1, a free port.

``python -m benchmarks._b10_server DB_FILE CERT_PEM TOPIC`` prints ``port N`` once
it listens and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import secrets
import sys

import uvicorn

from benchmarks._common import actor, open_service
from broadcast_adapters.bounces.webhooks import SesWebhook
from broadcast_adapters.web import create_app


class _Loader:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    def load(self, url: str) -> bytes:
        return self.pem


def main(directory: str, db_name: str, pem_path: str, topic: str) -> None:
    with open(pem_path, "rb") as f:
        pem = f.read()
    svc = open_service(directory, db_name)
    app = create_app(
        svc,
        actor_for=lambda request: actor(),
        secret_key=secrets.token_bytes(32),
        webhooks={"ses": SesWebhook(_Loader(pem), topic_arns=[topic])},
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
    )

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"port {server.servers[0].sockets[0].getsockname()[1]}", flush=True)

    async def run() -> None:
        task = asyncio.create_task(announce())
        await server.serve()
        task.cancel()

    try:
        asyncio.run(run())
    finally:
        svc.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
