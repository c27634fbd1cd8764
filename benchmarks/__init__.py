"""Benchmarks of broadcast-domain: metrics B1-B9, each against an anchor in the same run.

Run ``python -m benchmarks [--quick] [--only B1,B4] [--json PATH]``. Each
metric lives in a module ``bN_<name>.py`` exposing ``run(quick: bool) -> dict``;
the runner imports the ones present and prints one table.
"""
