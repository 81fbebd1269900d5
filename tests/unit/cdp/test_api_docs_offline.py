"""/docs and /redoc render in headless Chromium with every request outside 127.0.0.1 refused: the
Swagger UI and ReDoc assets come from a package, not a CDN (issue 21.7)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from support.browser import chromium

SCREENSHOTS = os.environ.get("CDP_SCREENSHOTS_DIR")  # set to save the pages as PNG (docs/images)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    from cdp.serving.api import ApiKeys, create_app

    # The docs pages need only the OpenAPI document, not a published store.
    app = create_app(tmp_path_factory.mktemp("store") / "published.duckdb", ApiKeys(frozenset({"k"}), frozenset()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def render(url: str, path: str, ready: str, screenshot: str | None = None) -> tuple[list[str], object]:
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def offline(route):
                if route.request.url.startswith(url):
                    route.continue_()
                else:  # an air-gapped laptop: nothing outside the API answers
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(url + path)
            page.wait_for_selector(ready, timeout=30_000)
            found = {
                "title": page.title(),
                "text": page.inner_text("body"),
                "stylesheets": page.evaluate("document.styleSheets.length"),
            }
            if screenshot and SCREENSHOTS:
                page.screenshot(path=str(Path(SCREENSHOTS) / screenshot), full_page=False)
            found["operations"] = page.locator(".opblock").count() if path.strip("/") == "docs" else None
        finally:
            browser.close()
    return refused, found


def test_swagger_ui_renders_offline(api_url):
    refused, page = render(api_url, "/docs", ".swagger-ui .info .title", "api-docs-offline.png")
    assert not refused, f"the page asked outside the API: {refused}"
    assert "CDP profile API" in page["text"] and page["stylesheets"] >= 1
    # Every operation of the API is listed (profiles, segments, members, health).
    assert page["operations"] >= 4, page
    for path in ("/profiles/{namespace}/{value}", "/segments", "/health"):
        assert path in page["text"]


def test_redoc_renders_offline(api_url):
    refused, page = render(api_url, "/redoc", "h1", "api-redoc-offline.png")
    assert not refused, f"the page asked outside the API: {refused}"
    assert "CDP profile API" in page["text"] and "/profiles/{namespace}/{value}" in page["text"]
