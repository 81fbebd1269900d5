"""The Great Expectations data docs keep their styling and their suite list with the network refused
(issue 21.7): `cdp contracts docs` vendors Bootstrap, jQuery and Font Awesome from PyPI packages and
drops every remote asset; checked in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.browser import chromium
from support.workspace import PROJECT_ROOT

SCREENSHOTS = os.environ.get("CDP_SCREENSHOTS_DIR")


def test_data_docs_render_styled_offline(tmp_path):
    from playwright.sync_api import sync_playwright

    import data_contracts

    result = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "contracts", "docs"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CDP_DATA_DIR": str(tmp_path), "CDP_WAREHOUSE": str(tmp_path / "warehouse.duckdb")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    index = Path(result.stdout.strip().rsplit("data docs: ", 1)[1])
    contracts = data_contracts.load_contracts()
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def offline(route):
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            # Bootstrap's stylesheet is applied (a navbar is a flex box only with it) and icons have their font.
            assert page.evaluate("getComputedStyle(document.querySelector('.navbar')).display") == "flex"
            assert "Font Awesome" in page.evaluate(
                "getComputedStyle(document.querySelector('.fas, .far, .fa'), '::before').fontFamily"
            )
            # The suite list (drawn by bootstrap-table from CDN before) lists every contract, linked.
            links = page.locator("table a[href^='expectations/']").all_inner_texts()
            assert sorted(links) == sorted(f"contract__{name}" for name in contracts), links
            if SCREENSHOTS:
                page.screenshot(path=str(Path(SCREENSHOTS) / "gx-data-docs-offline.png"))
            page.goto((index.parent / "expectations" / "contract__crm__contacts.html").as_uri())
            page.wait_for_load_state("load")
            assert page.evaluate("getComputedStyle(document.querySelector('.navbar')).display") == "flex"
            assert "email" in page.inner_text("body")
        finally:
            browser.close()
    assert not refused, f"the data docs asked outside the machine: {sorted(set(refused))[:10]}"
    assert not errors, errors
