"""The README's host-application example runs as printed."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The python block under the README's "Use it from your application" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use it from your application", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README lost its example"
    return match.group(1)


def test_readme_example_sends_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run in an empty folder, the example delivers both recipients and writes the result CSV."""
    code = readme_example()
    assert len(code.strip().splitlines()) <= 25
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    svc = namespace["svc"]
    bid = namespace["bid"]
    assert isinstance(bid, uuid.UUID)
    summary = svc.summary(bid)  # type: ignore[attr-defined]
    svc.close()  # type: ignore[attr-defined]
    assert (summary.delivered, summary.succeeded) == (2, 2)
    [written] = [p for p in tmp_path.iterdir() if p.suffix == ".csv"]
    rows = written.read_bytes().decode("utf-8-sig").splitlines()
    assert rows[0].startswith("状況,")
    assert len(rows) == 3
    assert "delivered=2" in capsys.readouterr().out
