"""Bootstrap for a machine that has only Python 3.11+: run nox sessions without installing nox.

Usage::

    python3 tools/dev.py tests                    # the test suite
    python3 tools/dev.py demo                     # the demo
    python3 tools/dev.py demo -- --recipients 50  # arguments after -- go to the session
    python3 tools/dev.py lint types arch          # several sessions
    python3 tools/dev.py                          # nox's default sessions
    python3 tools/dev.py -l                       # nox's own options pass through

It creates ``.venv`` beside the project on first use, installs nox into it (and
uv, which nox then uses to build session venvs faster; pip is the fallback when
uv cannot be installed), and runs ``nox -s SESSIONS -- ARGS`` from the project
root.  Only the standard library is used here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
NOX = "nox>=2024.10.9"
UV = "uv>=0.5"
# Records what was installed, so a changed pin reinstalls and nothing else does.
STAMP = VENV / ".dev-tools"


def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def pip(*args: str) -> int:
    cmd = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.call(cmd, stdin=subprocess.DEVNULL)


def ensure_tools() -> None:
    python = venv_python()
    if not python.exists():
        print(f"dev: creating {VENV.name}/ with {sys.executable}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            # Half a venv would be taken for a whole one on the next run.
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(
                f"dev: could not create {VENV} ({exc}); on Debian and Ubuntu the "
                "system Python needs the python3-venv package"
            )
    wanted = f"{NOX}\n{UV}\n"
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"dev: installing {NOX} into {VENV.name}/", flush=True)
    if pip("install", "--quiet", NOX) != 0:
        sys.exit("dev: could not install nox; is the package index reachable?")
    if pip("install", "--quiet", UV) != 0:
        # Not fatal: nox falls back to venv + pip when uv is absent.
        print("dev: uv could not be installed; session venvs will use pip", flush=True)
    STAMP.write_text(wanted)


def nox_command(argv: list[str]) -> list[str]:
    """Turn ``SESSION... [-- ARG...]`` into ``nox -s SESSION... [-- ARG...]``.

    When anything before ``--`` is an option, the words are nox's own command
    line and pass through unchanged (``python3 tools/dev.py -s tests -r``).
    """
    split = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:split], argv[split:]
    cmd = [str(venv_python()), "-m", "nox"]
    if head and not any(word.startswith("-") for word in head):
        return [*cmd, "-s", *head, *tail]
    return [*cmd, *head, *tail]


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        sys.exit(f"dev: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    ensure_tools()
    os.chdir(ROOT)
    return subprocess.call(nox_command(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
