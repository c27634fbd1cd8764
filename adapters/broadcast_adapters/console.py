"""Terminal output for the command line: progress bars and the status bar, with rich.

Kept apart from ``cli.py`` so the demo and the commands draw the same tables
and bars.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from broadcast_domain import REASONS, BroadcastStatus, MonthlyUsage, Summary

__all__ = ["RateColumn", "progress_bar", "status_table", "usage_line"]


class RateColumn(ProgressColumn):
    """Items per second, from rich's moving speed estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        """The current rate, or a dash before there is one."""
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            # rich's moving estimate needs two samples; one batch gives an average.
            speed = task.completed / task.elapsed
        if speed is None:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(console: Console, unit: str) -> Iterator[Progress]:
    """A progress display with count, rate, elapsed time and ETA; stopped on exit."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        # A few refreshes a second are enough to read and cost nothing measurable.
        refresh_per_second=4,
    )
    with progress:
        try:
            yield progress
        except BaseException:
            # A failed run ends with its one error line, not a half-full bar above it.
            for task in progress.task_ids:
                progress.update(task, visible=False)
            raise


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%Y/%m/%d %H:%M:%S %Z")


def status_table(summary: Summary, *, title: str, zone: ZoneInfo) -> Table:
    """The status bar of one broadcast as a two-column table (labels as the product shows them)."""
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("項目 (item)")
    table.add_column("件数 (count)", justify="right")
    status = summary.status
    label = f"{status.label} ({status.value})"
    if status is BroadcastStatus.PAUSED and summary.paused_reason:
        label += f": {summary.paused_reason}"
    table.add_row("状態 (broadcast status)", label)
    table.add_row("宛先 (recipients)", f"{summary.recipients:,}")
    table.add_row("配信済み (delivered)", f"{summary.delivered:,}")
    table.add_row("  配信成功 (succeeded)", f"{summary.succeeded:,}")
    table.add_row("  配信エラー (errors)", f"{summary.errors:,}")
    for reason, count in summary.errors_by_reason.items():
        english, japanese = REASONS[reason]
        table.add_row(f"    {japanese} ({english})", f"{count:,}")
    table.add_row("配信中 (sending)", f"{summary.sending:,}")
    table.add_row("予約済み (scheduled)", f"{summary.scheduled:,}")
    table.add_row("未確認のエラー (unacknowledged errors)", f"{summary.unacknowledged_errors:,}")
    if summary.estimated_completion_at is not None:
        table.add_row(
            "完了予定 (estimated completion)", _local(summary.estimated_completion_at, zone)
        )
    return table


def usage_line(usage: MonthlyUsage) -> str:
    """The month's send count against the limit, in one line."""
    month = f"{usage.year}-{usage.month:02d}"
    if usage.limit is None:
        return f"{usage.account_id} {month}: {usage.count:,} sent (no monthly limit)"
    return (
        f"{usage.account_id} {month}: {usage.count:,} of {usage.limit:,} sent "
        f"({usage.remaining:,} remaining)"
    )
