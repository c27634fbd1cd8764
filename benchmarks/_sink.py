"""A local SMTP sink for the benchmarks, run in its own process so it does not share our GIL.

``python -m benchmarks._sink`` listens on 127.0.0.1 (a free port), prints the
port, accepts every message and throws it away, and stops when stdin closes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    from aiosmtpd.controller import Controller

    port = _free_port()
    controller = Controller(_Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        print(port, flush=True)
        sys.stdin.read()
    finally:
        controller.stop()


class Sink:
    """The sink process: ``with Sink() as port: ...``."""

    def __enter__(self) -> int:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
