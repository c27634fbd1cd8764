"""Result CSV export speed: CsvCodec.write_rows against a plain csv.writer on the same rows.

Run: ``python benchmarks/bench_csv_export.py [rows]`` (default 100,000). Prints the best CPU time
of seven runs for each writer and encoding and the ratio (plain / codec; 1.0 = as fast).
"""

from __future__ import annotations

import csv  # noqa: TID251 - the baseline is csv itself
import io
import sys
import time
from collections.abc import Callable

from broadcast_adapters.csv_io import CsvCodec

HEADER = ["状況", "エラー確認日時", "姓", "名", "宛先", "会社名", "詳細メッセージ", "取得日時"]


def make_rows(count: int) -> list[list[str]]:
    return [
        [
            "配信エラー" if i % 10 == 0 else "配信成功",
            "2026/11/01 12:00:00" if i % 20 == 0 else "",
            "山田",
            "太郎",
            f"user{i}@example.jp",
            "株式会社サンプル",
            "550 5.1.1 <user@example.jp>: user unknown, bounced" if i % 10 == 0 else "250 OK",
            "2026/11/01 12:00:00",
        ]
        for i in range(count)
    ]


def plain(rows: list[list[str]], encoding: str) -> None:
    with io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="") as text:
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
        text.flush()


def codec(rows: list[list[str]], encoding: str) -> None:
    CsvCodec().write_rows(rows, io.BytesIO(), header=HEADER, encoding=encoding)


def best(run: Callable[[list[list[str]], str], None], rows: list[list[str]], enc: str) -> float:
    times = []
    for _ in range(7):
        start = time.process_time()
        run(rows, enc)
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows = make_rows(count)
    for encoding in ("utf-8-sig", "cp932"):
        base = best(plain, rows, encoding)
        ours = best(codec, rows, encoding)
        print(
            f"{count:,} rows {encoding:9}: csv.writer {base * 1000:7.1f} ms, "
            f"CsvCodec.write_rows {ours * 1000:7.1f} ms, ratio {base / ours:.2f}x"
        )


if __name__ == "__main__":
    main()
