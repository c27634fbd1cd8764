"""B13: bounce parsing alone, every corpus message held in memory, against Sisimai.

Ours: ``parse_bounce`` over the bytes of every message of the corpus (632),
held in memory, repeated; messages per second, median of the repetitions.
Anchor: Sisimai (Debian ``libsisimai-perl``) over the same bytes in the same
run: a Perl process reads every message into memory first (its start-up and
the reading are not timed), then parses each one as ``Sisimai->make`` does
for each message of a mailbox (``Sisimai::Message->new`` then
``Sisimai::Data->make``, with delivered and vacation results kept, as
Sisimai's own tests run), and reports its own elapsed time. Ratio: our rate /
Sisimai's; the goal is at least 2.0.
"""

from __future__ import annotations

import json
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import median_of, not_yet, result, timed
from benchmarks.b3_ingest import _corpus

GOAL = ">= 2.0"
TITLE = "bounce parsing alone, corpus in memory, vs Sisimai"

# Reads length-prefixed messages from stdin, then times REPS passes of parsing.
_PERL = r"""
use strict; use warnings;
use Time::HiRes qw(time);
use Sisimai::Message; use Sisimai::Data;
binmode STDIN;
my ($reps) = @ARGV;
my @mail;
while (read(STDIN, my $len, 4) == 4) {
    my $n = unpack('N', $len);
    read(STDIN, my $raw, $n);
    $raw =~ s/\r\n?/\n/g;
    push @mail, $raw;
}
my @times;
my $results = 0;
for (1 .. $reps) {
    my $t0 = time;
    $results = 0;
    for my $raw (@mail) {
        my $m = Sisimai::Message->new(data => $raw) or next;
        my $d = Sisimai::Data->make(data => $m, delivered => 1, vacation => 1);
        $results += scalar @$d if $d;
    }
    push @times, time - $t0;
}
print join(' ', scalar(@mail), $results, @times), "\n";
"""


def corpus_messages(folder: Path) -> list[bytes]:
    """The bytes of every message file of the corpus."""
    return [p.read_bytes() for p in sorted((folder / "set-of-emails" / "maildir").rglob("*.eml"))]


def sisimai_seconds(messages: list[bytes], reps: int) -> tuple[float, int] | None:
    """Sisimai's median seconds for one pass over ``messages``, and its result count."""
    perl = shutil.which("perl")
    if perl is None:
        return None
    probe = subprocess.run(
        [perl, "-MSisimai", "-e", "1"], capture_output=True, check=False, timeout=60
    )
    if probe.returncode != 0:
        return None
    framed = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    done = subprocess.run(
        [perl, "-e", _PERL, str(reps)],
        input=framed,
        capture_output=True,
        check=True,
        timeout=1800,
    )
    count, results, *times = done.stdout.decode().split()
    assert int(count) == len(messages)
    return statistics.median(float(t) for t in times), int(results)


def run(quick: bool) -> dict[str, Any]:
    """Measure B13 and return its table row."""
    from broadcast_adapters.bounces.parser import parse_bounce

    folder = _corpus()
    if folder is None:
        return not_yet("B13", TITLE, GOAL, "the bounce corpus is missing; set BROADCAST_CORPUS")
    messages = corpus_messages(folder)
    reps = 3 if quick else 5
    anchor = sisimai_seconds(messages, reps)
    if anchor is None:
        return not_yet(
            "B13", TITLE, GOAL, "Sisimai is not installed (Debian: apt-get install libsisimai-perl)"
        )
    sisimai, sisimai_results = anchor

    def ours() -> None:
        for raw in messages:
            parse_bounce(raw)

    ours()  # warm-up: imports and compiled patterns
    seconds = median_of([timed(ours) for _ in range(reps)])
    reports = sum(len(parse_bounce(raw).reports) for raw in messages)
    ours_rate = len(messages) / seconds
    anchor_rate = len(messages) / sisimai
    return result(
        "B13",
        title=TITLE,
        ours=round(ours_rate, 1),
        anchor=round(anchor_rate, 1),
        unit="messages/s",
        ratio=round(ours_rate / anchor_rate, 3),
        goal=GOAL,
        size=f"{len(messages)} messages",
        note=f"{reports} reports from ours, {sisimai_results} results from Sisimai",
    )


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2, ensure_ascii=False))
