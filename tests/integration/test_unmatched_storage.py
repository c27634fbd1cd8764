"""A 50 MB unmatched report on a SQLite store: the log keeps an excerpt, memory stays bounded.

The measurement runs in a fresh subprocess so that nothing else the test run
allocated counts: its peak resident set size after recording the report is
compared with its resident size just before the report was built (so the
growth counted includes the 50 MB message itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

MB = 1024 * 1024

_SCRIPT = textwrap.dedent(
    """
    import json, os, sqlite3, sys
    from broadcast_domain.testing.intake import dispatched_world
    from broadcast_domain.testing.reports import dsn_message, failure_report

    db = sys.argv[1]
    size = int(sys.argv[2])
    w = dispatched_world({"acme": ["a0@example.org"]}, url=f"sqlite:///{db}",
                         max_bounce_bytes=size + 8 * 1024 * 1024)

    def unmatched_dsn(note):
        # To the plain return path, quoting a Message-ID nobody sent: unmatched.
        return dsn_message(
            failure_report(f"{note}@example.net", reported_at=w.clock()),
            verp_address="bounces@mail.example.com",
            original_message_id=f"<{note}@elsewhere.example>",
            original="message", line_ending="\\n",
        )

    # Warm up every code path (parser, codec, SQLite) on a small report first.
    assert [o.kind for o in w.svc.record_bounce_message(unmatched_dsn("small"))] == ["unmatched"]

    def store_bytes():
        # Pages still in the write-ahead log count once they are in the file.
        with sqlite3.connect(db) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))

    def rss_now():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def peak_now():
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    store_before = store_bytes()
    # Forget the peak so far (imports, set-up): only this message's peak counts.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss_before = rss_now()
    small = unmatched_dsn("huge")
    boundary = small.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    end = small.rindex(b"\\n--" + boundary + b"--")
    block = (b"y" * 75 + b"\\n") * (1024 * 1024 // 76)
    count = size // len(block) + 1
    # One allocation of the whole message: the list holds one block many times.
    raw = b"".join([small[:end], b"\\n", *([block] * count), small[end:]])
    outcomes = w.svc.record_bounce_message(raw)
    peak = peak_now()
    kept = w.svc.unmatched_reports(per_page=10).items
    w.svc.close()
    print(json.dumps({
        "kinds": [o.kind for o in outcomes],
        "message_bytes": len(raw),
        "kept_excerpt_bytes": max(len(m.raw) for m in kept),
        "kept_sizes": sorted(m.size for m in kept),
        "store_growth": store_bytes() - store_before,
        "rss_growth": peak - rss_before,
    }))
    """
)


def test_a_50_mb_unmatched_report_leaves_the_store_and_the_process_small(tmp_path: Path) -> None:
    """The store grows by under 1 MB and the process peaks under 200 MB more than before."""
    size = 50 * MB
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "store.db"), str(size)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)  # the figures, for docs/reliability.md (pytest -s)
    assert result["kinds"] == ["unmatched"]
    assert result["message_bytes"] >= size
    assert result["kept_excerpt_bytes"] <= 70 * 1024
    assert result["kept_sizes"][-1] == result["message_bytes"]
    assert result["store_growth"] < 1 * MB
    assert result["rss_growth"] < 200 * MB
