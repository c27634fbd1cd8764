"""The bounce parser against a corpus of real bounce messages with known results.

The corpus (real messages from set-of-emails, expectations from Sisimai's test
tables) is found through ``BROADCAST_CORPUS`` or next to the repository as
``../shared/corpus``. It is skipped when absent, except under ``CI``, where a
missing corpus fails.

How a recipient counts as matched (compared per file as a multiset, because
the tables give no addresses):

* every ``failed`` or ``delayed`` report the parser gives for a ``bounce`` file
  becomes a key ``(status, permanent)``; the expected key is ``(status, status
  starts with "5")``. Delayed reports count because Sisimai's tables list some
  warnings ("will keep trying") among the bounces: we read the same status
  from them, and call them ``delayed`` rather than failures (SPEC section 2);
* Sisimai writes a pseudo code (``x.0.9xx``, ``x.9.2xx``) when the message
  carries no code of its own. For those the expected key is ``("no code",
  class is 5)`` and a report matches it when the parser found no enhanced
  status code either and made the same permanent/temporary decision: the
  parser is not asked to invent Sisimai's private numbering, only to notice
  that there is no code and to get the class right;
* the permanent/temporary figure is counted separately on the decision
  alone, with the same multiset rule;
* the reason figure compares each report's ``reason`` with Sisimai's, with the
  same multiset rule, and is counted separately again.

Each figure has its own floor; the misses are printed grouped by cause.
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcast_adapters.bounces.parser import parse_bounce
from broadcast_domain.ports import ParsedMessage

_PSEUDO = re.compile(r"^[245]\.(?:0\.9\d\d|9\.2\d\d)$")
STATUS_FLOOR = 0.97
REASON_FLOOR = 0.85
NO_CODE = "no code"


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise RuntimeError("no pyproject.toml above the test file")


def corpus_dir() -> Path | None:
    """The corpus folder, or None when it is not there."""
    configured = os.environ.get("BROADCAST_CORPUS")
    folder = Path(configured) if configured else _repo_root().parent / "shared" / "corpus"
    return folder if (folder / "expectations.json").is_file() else None


@pytest.fixture(scope="module")
def corpus() -> Path:
    """The corpus folder; skip (or fail under CI) when it is missing."""
    folder = corpus_dir()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("the bounce corpus is missing; set BROADCAST_CORPUS")
        pytest.skip("the bounce corpus is not available; set BROADCAST_CORPUS")
    return folder


def _items(folder: Path) -> list[dict[str, Any]]:
    data = json.loads((folder / "expectations.json").read_text("utf-8"))
    items: list[dict[str, Any]] = data["items"]
    return items


def _parsed(folder: Path, item: dict[str, Any]) -> ParsedMessage:
    return parse_bounce((folder / "set-of-emails" / item["file"]).read_bytes())


def expected_key(status: str) -> tuple[str, bool]:
    """The comparison key of one expected recipient."""
    permanent = status.startswith("5")
    return (NO_CODE, permanent) if _PSEUDO.match(status) else (status, permanent)


def parsed_key(status: str | None, permanent: bool) -> tuple[str, bool]:
    """The comparison key of one failed report."""
    return (status or NO_CODE, permanent)


def _match(expected: list[Any], got: list[Any]) -> int:
    return sum((collections.Counter(expected) & collections.Counter(got)).values())


class Score:
    """Per-recipient figures over the bounce files, with the misses by cause."""

    def __init__(self) -> None:
        self.total = 0
        self.status_ok = 0
        self.permanence_ok = 0
        self.reason_ok = 0
        self.warnings: list[str] = []
        self.empty_details: list[str] = []
        self.misses: dict[str, list[str]] = collections.defaultdict(list)
        self.reason_misses: dict[str, list[str]] = collections.defaultdict(list)


def score_bounces(folder: Path) -> Score:
    """Parse every ``bounce`` file and compare with the expectations."""
    score = Score()
    for item in _items(folder):
        if item["kind"] != "bounce":
            continue
        parsed = _parsed(folder, item)
        failed = [r for r in parsed.reports if r.action in ("failed", "delayed")]
        score.warnings += [
            f"{item['file']}: {r.recipient}" for r in parsed.reports if r.action == "delayed"
        ]
        score.empty_details += [
            f"{item['file']}: {r.recipient}"
            for r in parsed.reports
            if r.action == "failed" and not r.detail.strip()
        ]
        expected = [expected_key(r["status"]) for r in item["recipients"]]
        got = [parsed_key(r.status, r.permanent) for r in failed]
        score.total += len(expected)
        ok = _match(expected, got)
        score.status_ok += ok
        score.permanence_ok += _match([p for _, p in expected], [p for _, p in got])
        if ok < len(expected):
            reasons = ",".join(sorted({r["reason"] for r in item["recipients"]}))
            score.misses[reasons].append(f"{item['file']}: expected {expected} got {got}")
        want = collections.Counter(r["reason"] for r in item["recipients"])
        have = collections.Counter(r.reason for r in failed)
        score.reason_ok += sum((want & have).values())
        missed_reasons = sorted((want - have).elements())
        wrong_reasons = sorted((have - want).elements())
        wrong_reasons += ["-"] * (len(missed_reasons) - len(wrong_reasons))
        for missed, wrong in zip(missed_reasons, wrong_reasons, strict=False):
            score.reason_misses[f"{missed} read as {wrong}"].append(item["file"])
    return score


@pytest.fixture(scope="module")
def score(corpus: Path) -> Score:
    """The corpus figures, computed once for the tests below."""
    return score_bounces(corpus)


def test_bounce_statuses_match_the_expectations(score: Score) -> None:
    """At least 97% of the bounce recipients get the expected status and permanence."""
    status_rate = score.status_ok / score.total
    permanence_rate = score.permanence_ok / score.total
    print(
        f"\nstatus+permanence: {score.status_ok}/{score.total} = {status_rate:.1%}; "
        f"permanence alone: {score.permanence_ok}/{score.total} = {permanence_rate:.1%}; "
        f"read as warnings (delayed): {len(score.warnings)}"
    )
    for reason, misses in sorted(score.misses.items()):
        print(f"  misses [{reason}]:")
        for miss in misses:
            print(f"    {miss}")
    assert status_rate >= STATUS_FLOOR
    assert permanence_rate >= STATUS_FLOOR


def test_bounce_reasons_match_sisimai(score: Score) -> None:
    """At least 85% of the bounce recipients get Sisimai's reason."""
    rate = score.reason_ok / score.total
    print(f"\nreason: {score.reason_ok}/{score.total} = {rate:.1%}")
    for cause, files in sorted(score.reason_misses.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(files):3} {cause}: {', '.join(files[:6])}{' ...' if len(files) > 6 else ''}")
    assert rate >= REASON_FLOOR


def test_every_failure_in_the_corpus_has_a_detail(score: Score) -> None:
    """No failed report of a bounce file has an empty detail."""
    assert score.empty_details == []


def _of_kind(folder: Path, kind: str) -> Iterator[tuple[dict[str, Any], ParsedMessage]]:
    for item in _items(folder):
        if item["kind"] == kind:
            yield item, _parsed(folder, item)


def test_feedback_reports_give_complaints_with_their_type(corpus: Path) -> None:
    """Every ARF file gives complaints (no failures) carrying the expected feedback types."""
    for item, parsed in _of_kind(corpus, "feedback"):
        actions = {r.action for r in parsed.reports}
        assert actions == {"complaint"}, item["file"]
        expected = {r["feedback_type"] for r in item["recipients"]}
        assert {r.feedback_type for r in parsed.reports} <= expected | {None}, item["file"]
        assert any(r.feedback_type in expected for r in parsed.reports), item["file"]


# Files whose label we disagree with, and why. Sisimai's table for this file
# records zero results because it documents a crash fix, but the message is a
# mailbox-full rejection notice ("reject reason: Mailbox full", "target mail
# address: ...") sent to a VERP return path, so the parser reports it as one.
LABEL_DISAGREEMENTS = {"maildir/not/rb-issue-368-bug.eml": "xxxx@yyyyyy.net"}


@pytest.mark.parametrize("kind", ["autoreply", "delay", "delivered", "not-bounce"])
def test_reports_that_are_not_failures_never_give_failed(corpus: Path, kind: str) -> None:
    """Auto-replies, delay warnings, success DSNs and ordinary mail never yield a failure."""
    seen = 0
    for item, parsed in _of_kind(corpus, kind):
        if item["file"] in LABEL_DISAGREEMENTS:
            continue
        seen += 1
        assert all(r.action != "failed" for r in parsed.reports), item["file"]
    assert seen > 0


def test_label_disagreements_are_what_the_messages_say(corpus: Path) -> None:
    """Each file listed as a label disagreement gives exactly the failure its text states."""
    for name, recipient in LABEL_DISAGREEMENTS.items():
        parsed = parse_bounce((corpus / "set-of-emails" / name).read_bytes())
        assert [(r.action, r.recipient) for r in parsed.reports] == [("failed", recipient)]


def test_auto_replies_are_recognised(corpus: Path) -> None:
    """Every RFC 3834 auto-reply in the corpus is reported as an auto-reply."""
    for item, parsed in _of_kind(corpus, "autoreply"):
        assert [r.action for r in parsed.reports] == ["autoreply"], item["file"]


def test_every_message_parses_without_raising(corpus: Path) -> None:
    """Every file in the corpus, with or without expectation, parses to a ParsedMessage."""
    files = sorted((corpus / "set-of-emails" / "maildir").rglob("*.eml"))
    assert len(files) > 600
    for path in files:
        assert isinstance(parse_bounce(path.read_bytes()), ParsedMessage)


def test_bounces_carry_the_original_message_id_when_the_copy_has_one(corpus: Path) -> None:
    """A bounce whose returned copy shows a Message-ID header yields that id."""
    checked = 0
    missing: list[str] = []
    for item, parsed in _of_kind(corpus, "bounce"):
        raw = (corpus / "set-of-emails" / item["file"]).read_bytes()
        if len(re.findall(rb"\n[ \t>]*message-id:", raw.lower())) >= 2:
            checked += 1
            if not parsed.original_message_ids:
                missing.append(item["file"])
    print(f"\noriginal Message-ID found in {checked - len(missing)}/{checked}; missing: {missing}")
    assert checked > 100
    assert len(missing) <= checked * 0.03
