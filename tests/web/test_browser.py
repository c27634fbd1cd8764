"""The results screen in a real browser: headless Chromium against uvicorn on 127.0.0.1.

Debian's ``chromium`` is driven through Playwright (pointed at the system
binary, no browser download). When it is missing the tests fail and say how
to install it: the nox ``tests`` session installs it as root. Screenshots of
the list and the detail page go to ``$BROADCAST_SCREENSHOTS`` when set (the
docs' images are made that way), else to the test's temporary folder.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_support import ACTORS, INBOX, SECRET, Seeded, actor_for, seed, served

from broadcast_adapters.web import create_app
from broadcast_domain import DeliveryStatus
from broadcast_domain.testing.fakes import FakeTransport

CHROMIUM = os.environ.get("BROADCAST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's "
            "'chromium' and 'fonts-noto-cjk' packages (the nox tests session installs them "
            "when run as root; otherwise: sudo apt-get install -y chromium fonts-noto-cjk, "
            "or point BROADCAST_CHROMIUM at a Chromium binary)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Seeded, str]]:
    seeded = seed(f"sqlite:///{tmp_path / 'web.db'}")
    app = create_app(seeded.svc, actor_for=actor_for, secret_key=SECRET)
    try:
        with served(app) as url:
            yield seeded, url
    finally:
        seeded.svc.close()


def _page(browser: Any, user: str) -> Any:
    context = browser.new_context(
        extra_http_headers={"X-Test-User": user},
        accept_downloads=True,
        locale="ja-JP",
        timezone_id="Asia/Tokyo",
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def _shots() -> Path | None:
    folder = os.environ.get("BROADCAST_SCREENSHOTS")
    return Path(folder) if folder else None


def _number(page: Any, field: str) -> int:
    return int(page.locator(f'#status [data-field="{field}"]').first.inner_text().strip())


def test_list_detail_search_filter_export_and_acknowledge(
    browser: Any, site: tuple[Seeded, str], tmp_path: Path
) -> None:
    """A person can go from the tabs to the bar, search, filter, export and confirm all errors."""
    seeded, url = site
    svc = seeded.svc
    page = _page(browser, "admin")
    shots = _shots() or tmp_path

    page.goto(f"{url}/inboxes/{INBOX}/broadcasts")
    tabs = page.locator('[role="tab"]').all_inner_texts()
    assert [t.split()[0] for t in tabs] == ["すべて", "配信中", "配信済み"]
    assert page.locator("#broadcasts tbody tr").count() == 3
    page.screenshot(path=str(shots / "results-list.png"), full_page=True)
    page.click('[data-view="sending"]')
    assert page.locator("#broadcasts tbody tr").count() == 1
    page.click('[data-view="sent"]')
    assert page.locator("#broadcasts tbody tr").count() == 2

    page.locator(
        f'tr[data-broadcast="{seeded.csv_broadcast}"] a:has-text("宛先を確認する")'
    ).click()
    summary = svc.summary(seeded.csv_broadcast)
    for field in ("recipients", "delivered", "succeeded", "errors", "sending", "scheduled"):
        assert _number(page, field) == getattr(summary, field), field
    assert _number(page, "unacknowledged_errors") == summary.unacknowledged_errors > 0
    link = page.locator("#unacknowledged-link")
    assert link.inner_text().startswith(f"{summary.unacknowledged_errors}件の未確認の配信エラー")
    page.screenshot(path=str(shots / "results-detail.png"))

    # Search: the keyword goes through the same normalisation as the service.
    page.fill('input[name="q"]', "山田")
    page.click("#search-button")
    page.wait_for_url("**q=*")
    found = svc.recipients(seeded.csv_broadcast, keyword="山田", per_page=50)
    shown = page.locator("#recipients tbody tr[data-address]")
    assert shown.count() == len(found.items) > 0
    assert page.locator('.recipients [data-field="total"]').inner_text() == str(found.total)

    # Status filter, with the keyword cleared.
    page.fill('input[name="q"]', "")
    page.select_option('select[name="status"]', "error")
    page.click("#search-button")
    page.wait_for_url("**status=error*")
    errors = svc.recipients(seeded.csv_broadcast, status=DeliveryStatus.ERROR, per_page=50)
    addresses = page.locator("#recipients tbody tr[data-address]").evaluate_all(
        "rows => rows.map(r => r.dataset.address)"
    )
    assert addresses == [item.address for item in errors.items]
    assert all(
        s == "error"
        for s in page.locator("#recipients tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.status)"
        )
    )

    # The reason filter, with the status filter still on.
    page.select_option('select[name="reason"]', "userunknown")
    page.click("#search-button")
    page.wait_for_url("**reason=userunknown*")
    unknown = svc.recipients(
        seeded.csv_broadcast, status=DeliveryStatus.ERROR, reason="userunknown", per_page=50
    )
    shown = page.locator("#recipients tbody tr[data-address]").evaluate_all(
        "rows => rows.map(r => r.dataset.address)"
    )
    assert shown == [item.address for item in unknown.items]
    assert shown

    # The download is exactly what the service exports.
    with page.expect_download() as info:
        page.click("#csv-export")
    download = info.value
    expected = io.BytesIO()
    svc.export_results_csv(seeded.csv_broadcast, expected, actor=ACTORS["admin"])
    assert Path(download.path()).read_bytes() == expected.getvalue()
    assert download.suggested_filename == svc.results_file_name(seeded.csv_broadcast)

    # Confirm all: declining the confirm() records nothing; はい (OK) acknowledges all.
    page.click("#unacknowledged-link")
    count = svc.summary(seeded.csv_broadcast).unacknowledged_errors
    assert page.locator("#acknowledge-button").inner_text().startswith(f"{count}件 確認済みにする")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#acknowledge-button")
    assert svc.summary(seeded.csv_broadcast).unacknowledged_errors == count
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#acknowledge-button")
    page.wait_for_selector("#acknowledged-notice")
    assert messages and f"{count}件" in messages[0]
    assert page.locator('[data-field="total"]').inner_text() == "0"
    assert svc.summary(seeded.csv_broadcast).unacknowledged_errors == 0
    page.goto(f"{url}/broadcasts/{seeded.csv_broadcast}")
    assert _number(page, "unacknowledged_errors") == 0
    page.context.close()


def test_the_bar_follows_the_broadcast_while_it_sends(
    browser: Any, site: tuple[Seeded, str]
) -> None:
    """While sending, the page polls summary.json and its bar shows the new counts."""
    seeded, url = site
    page = _page(browser, "viewer")
    page.goto(f"{url}/broadcasts/{seeded.sending_broadcast}")
    before = _number(page, "succeeded")
    assert before == seeded.svc.summary(seeded.sending_broadcast).succeeded
    seeded.svc.dispatch_due(FakeTransport(), max_messages=10)
    after = seeded.svc.summary(seeded.sending_broadcast).succeeded
    assert after > before
    page.wait_for_function(
        "n => document.querySelector('#status [data-field=\"succeeded\"]').textContent == n",
        arg=str(after),
    )
    assert _number(page, "scheduled") == seeded.svc.summary(seeded.sending_broadcast).scheduled
    page.context.close()


def test_an_actor_without_the_role_sees_403_naming_it(
    browser: Any, site: tuple[Seeded, str]
) -> None:
    """No inbox role: 403 naming VIEWER; a viewer exporting: 403 naming OPERATOR."""
    seeded, url = site
    stranger = _page(browser, "stranger")
    response = stranger.goto(f"{url}/broadcasts/{seeded.csv_broadcast}")
    assert response is not None
    assert response.status == 403
    assert "VIEWER" in stranger.locator(".required-role").inner_text()
    stranger.context.close()

    viewer = _page(browser, "viewer")
    response = viewer.goto(f"{url}/broadcasts/{seeded.csv_broadcast}/errors")
    assert response is not None
    assert response.status == 200
    viewer.once("dialog", lambda dialog: dialog.accept())
    viewer.click("#acknowledge-button")
    viewer.wait_for_selector(".required-role")
    assert "OPERATOR" in viewer.locator(".required-role").inner_text()
    assert seeded.svc.summary(seeded.csv_broadcast).unacknowledged_errors > 0
    viewer.context.close()
