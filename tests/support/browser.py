"""A real browser for page tests: Debian's chromium driven by Playwright (its own browser download is
unreachable here), installed with apt when missing; skipped loudly only when that fails."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    # apt lists may need a refresh first.
    installed = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        installed = subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=600
        )
    found = shutil.which("chromium")
    if not found:
        pytest.skip(
            f"SKIPPED LOUDLY: no chromium and `apt-get install -y chromium` failed:\n{installed.stderr[-1500:]}"
        )
    return found
