"""Task runner: every check, the docs, the benchmarks and the demo, one session each.

Run them through ``python3 tools/dev.py SESSION [-- ARGS]`` on a machine that has
only Python, or with ``nox -s SESSION [-- ARGS]`` where nox is installed.

Sessions that need the library install it *non-editable* into their own venv,
so tests, the demo and the benchmarks run against what a user would install,
not against the checkout.  Venvs are reused between runs; the project itself is
reinstalled every time so a reused venv never runs stale code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"

# uv when it is installed (tools/dev.py installs it when the index has it),
# otherwise the standard library venv + pip, which is always there.
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
# A bare `nox` runs the quick static checks first, then the tests.
nox.options.sessions = ["lint", "types", "arch", "tests"]

ROOT = Path(__file__).parent
SOURCES = ["src", "adapters", "tests", "noxfile.py", "tools"]
PACKAGE_DIRS = ["src", "adapters"]
# Every version the sessions install, pinned (``nox -s lock`` rewrites it), so that
# CI installs today what it installed yesterday.
CONSTRAINTS = (
    ROOT / "tools" / "constraints.txt"
)  # where the two import packages live, as in [tool.hatch]

# Tool pins: a new ruff or mypy release must not turn a green tree red by itself.
RUFF = "ruff>=0.17.6,<0.18"
MYPY = "mypy>=2.4,<2.5"
IMPORT_LINTER = "import-linter>=2.17,<3"
COVERAGE = "pytest-cov>=6,<8"
# The branch coverage the whole test suite must reach (measured: 93% when set).
COVERAGE_FLOOR = 90
DOCS = [
    "sphinx>=9.0,<10",
    "myst-parser>=5.0,<6",
    "furo>=2025.12.19",
    "sphinx-autoapi>=3.9,<4",
]


# Run inside a session venv: exits non-zero when a package is imported from the checkout.
INSTALLED_CHECK = """
import sys, sysconfig, broadcast_domain, broadcast_adapters
site = sysconfig.get_paths()["purelib"]
for module in (broadcast_domain, broadcast_adapters):
    if not module.__file__.startswith(site):
        sys.exit(f"{module.__name__} is imported from {module.__file__}, not from {site}")
"""


def install_project(session: nox.Session, extras: str = "all") -> None:
    """Install the project (not editable) with ``extras`` into the session venv.

    The first call resolves the dependencies; the second forces a rebuild of
    the project alone, because installers skip a directory whose version did
    not change and a reused venv would otherwise keep yesterday's code.
    """
    session.install("-c", str(CONSTRAINTS), f".[{extras}]")
    session.install("--force-reinstall", "--no-deps", ".")


CHROMIUM = Path(os.environ.get("BROADCAST_CHROMIUM", "/usr/bin/chromium"))
CJK_FONTS = Path("/usr/share/fonts/opentype/noto")
BROWSER_PACKAGES = ["chromium", "fonts-noto-cjk"]


def ensure_browser(session: nox.Session) -> None:
    """Install Debian's chromium and a Japanese font for the browser tests when missing.

    Only as root with apt-get (CI runs so); elsewhere the session says what to
    install, and the browser tests fail naming it: they are never skipped.
    """
    has_fonts = any(CJK_FONTS.glob("NotoSansCJK*")) if CJK_FONTS.is_dir() else False
    if CHROMIUM.is_file() and has_fonts:
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        session.warn(
            f"{CHROMIUM} or the CJK fonts are missing and this is not root with apt-get: "
            f"install {' '.join(BROWSER_PACKAGES)} for the browser tests"
        )
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(apt, "-qq", "update", external=True, env=env)
    session.run(
        apt,
        "install",
        "-y",
        "-qq",
        *BROWSER_PACKAGES,
        external=True,
        env=env,
    )


def has_tests() -> bool:
    return any((ROOT / "tests").rglob("test_*.py"))


@nox.session
def tests(session: nox.Session) -> None:
    """Run pytest against the installed package; extra args go to pytest.

    The hypothesis profile comes from ``HYPOTHESIS_PROFILE``, or ``ci`` when
    ``CI`` is set (see tests/conftest.py).
    """
    install_project(session)
    ensure_browser(session)
    # Fail loudly if the checkout, not the installed package, would be imported.
    session.run("python", "-c", INSTALLED_CHECK, silent=True)
    # pytest exits 5 when it collects nothing: that is only acceptable while
    # the tree has no test file at all, never once tests exist.
    codes = [0] if has_tests() else [0, 5]
    session.install("-c", str(CONSTRAINTS), COVERAGE)
    # Branch coverage of both installed packages, always measured; the floor applies
    # to the whole suite only (a run of a few files covers less by design).
    floor = [] if session.posargs else [f"--cov-fail-under={COVERAGE_FLOOR}"]
    session.run(
        "pytest",
        "--cov=broadcast_domain",
        "--cov=broadcast_adapters",
        "--cov-branch",
        "--cov-report=term:skip-covered",
        *floor,
        *session.posargs,
        success_codes=codes,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the sources, tests and tooling."""
    session.install("-c", str(CONSTRAINTS), RUFF)
    paths = [p for p in [*SOURCES, "benchmarks", "docs/conf.py"] if (ROOT / p).exists()]
    session.run("ruff", "check", *session.posargs, *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict over both import packages, with every extra's types installed."""
    install_project(session)
    session.install("-c", str(CONSTRAINTS), MYPY)
    # Packages and strictness come from [tool.mypy]; mypy_path points at the
    # checkout, so the sources are checked, and the deps' types are installed.
    session.run("mypy", "--strict", *session.posargs)
    # The tests too, as strictly. They import their sibling helper modules by name
    # (pytest puts each test folder on sys.path), and two folders hold a conftest
    # module, which one mypy run cannot tell apart: the inner one is checked alone.
    tests_path = os.pathsep.join(
        ["src", "adapters", "tests/integration", "tests/web", "tests/property"]
    )
    inner = "tests/integration/conftest.py"
    env = {"MYPYPATH": tests_path}
    session.run(
        "mypy",
        "--strict",
        "--explicit-package-bases",
        "--namespace-packages",
        "--exclude",
        inner.replace(".", r"\."),
        "tests",
        env=env,
    )
    session.run("mypy", "--strict", inner, env=env)


@nox.session
def arch(session: nox.Session) -> None:
    """import-linter: the layering contracts of [tool.importlinter], on the checkout.

    A contract that names a module that does not exist fails the session: a
    renamed module must be renamed in the contracts too, never silently dropped.
    """
    session.install("-c", str(CONSTRAINTS), IMPORT_LINTER)
    # The graph is built from source text, so the checkout is analysed as is.
    env = {"PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in PACKAGE_DIRS)}
    session.run(
        "lint-imports",
        "--no-logo",
        "--no-cache",
        "--config",
        "pyproject.toml",
        *session.posargs,
        env=env,
    )


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs with warnings as errors (docs/_build/html)."""
    # autoapi reads the source text, so the project itself need not be installed.
    session.install("-c", str(CONSTRAINTS), *DOCS)
    out = ROOT / "docs" / "_build"
    # autoapi regenerates its pages; a stale tree would hide removed modules.
    shutil.rmtree(out, ignore_errors=True)
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        *session.posargs,
        "docs",
        str(out / "html"),
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: ``nox -s bench -- --quick``."""
    if not (ROOT / "benchmarks" / "__main__.py").exists():
        session.error("benchmarks/__main__.py does not exist yet")
    install_project(session, extras="all,bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run ``broadcast-domain demo``: ``nox -s demo -- --recipients 50``."""
    install_project(session)
    session.run("broadcast-domain", "demo", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite tools/constraints.txt: the project's extras and the dev tools, pinned."""
    session.install("uv>=0.5")
    session.run(
        "uv",
        "pip",
        "compile",
        "--quiet",
        "--python-version",
        "3.11",
        "--universal",
        "--no-header",
        "--all-extras",
        "pyproject.toml",
        "tools/requirements-dev.in",
        "-o",
        str(CONSTRAINTS),
    )
