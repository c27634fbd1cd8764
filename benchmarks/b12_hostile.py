"""B12: bounce parsing of pathological inputs, each family at 1 MB and 2 MB.

Each family of :data:`broadcast_domain.testing.bounces.HOSTILE_FAMILIES` (a
body of repeated ``<``, ``@``, ``a``, ``<a@``, Message-ID lines, multiparts
nested inside each other, recipient blocks, a folded header of addresses,
unclosed HTML tags) is built at 1 MB and at 2 MB and parsed; the figure per
family is time(2 MB) / time(1 MB), the median of a few runs, and the goal is at
most 2.5 (linear: twice the input, about twice the time, or less where the
parser's documented limits stop reading). Each sample repeats a fast parse
until it lasts 0.2 s, so that no ratio is timer noise. The row's ratio is the
worst family.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from benchmarks._common import median_of, result, timed

GOAL = "<= 2.5"
TITLE = "bounce parsing of pathological inputs, time(2 MB) / time(1 MB), worst family"
MB = 1_000_000


def family_times(family: str, reps: int) -> tuple[float, float]:
    """Median seconds to parse the family's message at 1 MB and at 2 MB.

    A parse that takes a millisecond is timer noise on a shared machine, so
    each sample times as many parses as make the 1 MB sample last at least
    0.2 s (the same count at 2 MB), divided by that count.
    """
    from broadcast_adapters.bounces.parser import parse_bounce
    from broadcast_domain.testing.bounces import hostile_bounce

    one, two = hostile_bounce(family, MB), hostile_bounce(family, 2 * MB)
    first = timed(lambda: parse_bounce(one))  # also warms the imports and caches
    count = max(1, math.ceil(0.2 / max(first, 1e-6)))

    def sample(raw: bytes) -> float:
        def go() -> None:
            for _ in range(count):
                parse_bounce(raw)

        return timed(go) / count

    small = median_of([sample(one) for _ in range(reps)])
    large = median_of([sample(two) for _ in range(reps)])
    return small, large


def run(quick: bool) -> dict[str, Any]:
    """Measure B12 and return its table row."""
    from broadcast_domain.testing.bounces import HOSTILE_FAMILIES

    reps = 3 if quick else 7
    families: dict[str, dict[str, float]] = {}
    for family in HOSTILE_FAMILIES:
        small, large = family_times(family, reps)
        ratio = large / small
        families[family] = {
            "1MB_s": round(small, 5),
            "2MB_s": round(large, 5),
            "ratio": round(ratio, 2),
        }
    worst = max(families, key=lambda f: families[f]["ratio"])
    return result(
        "B12",
        title=TITLE,
        ours=families[worst]["2MB_s"],
        anchor=families[worst]["1MB_s"],
        unit="s",
        ratio=families[worst]["ratio"],
        goal=GOAL,
        size="1 MB and 2 MB per family",
        note="; ".join(
            f"{f} {v['1MB_s'] * 1000:.1f}/{v['2MB_s'] * 1000:.1f} ms = {v['ratio']}"
            for f, v in families.items()
        ),
        families=families,
    )


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2, ensure_ascii=False))
