"""The documentation pages in a real browser (Debian's headless Chromium, driven by Playwright):
each of /api/docs, /rexec/docs, /api/redoc and /rexec/redoc renders every operation of its
OpenAPI document, runs no code but the API's own assets, and reaches nothing beyond the service.

A request to another origin may be attempted by a page only to be blocked by its
Content-Security-Policy (ReDoc's sidebar shows a logo from Redocly's CDN); any other request
elsewhere, a request that is answered from elsewhere, or a script error fails the test.
"""

import os
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# As the machine's browser tests start it: no sandbox (root), and none of Chromium's own
# connections to Google's services.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a page may try to load from elsewhere, for its CSP to block.
BLOCKED_BY_DESIGN = {"https://cdn.redoc.ly/redoc/logo-mini.svg"}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"the documentation pages' test needs Chromium at {CHROMIUM} (make deps installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def operations(document):
    return {
        operation["operationId"]
        for methods in document["paths"].values()
        for method, operation in methods.items()
        if method in {"get", "put", "post", "delete", "patch"}
    }


# (page, how one operation's element is found by its operationId)
PAGES = [
    ("docs", lambda operation: f".opblock[id$='-{operation}']"),
    ("redoc", lambda operation: f"[data-section-id='operation/{operation}']"),
]


@pytest.mark.parametrize("prefix", ["api", "rexec"])
@pytest.mark.parametrize("page_name,selector", PAGES, ids=[name for name, _ in PAGES])
def test_each_page_renders_every_operation_from_the_service_alone(api, browser, prefix, page_name, selector):
    base = f"{api.ndp if prefix == 'api' else api.rexec}"
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    expected = operations(requests.get(f"{base}/openapi.json", timeout=10).json())
    assert expected, "the document has operations"

    page = browser.new_page()
    answered, failed, errors = [], [], []
    page.on("response", lambda response: answered.append(response.url))
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    try:
        response = page.goto(f"{base}/{page_name}")
        assert response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "connect-src 'self';" in csp
        for operation in sorted(expected):
            page.locator(selector(operation)).first.wait_for(state="attached", timeout=20_000)
        rendered = {operation for operation in expected if page.locator(selector(operation)).count()}
        assert rendered == expected
    finally:
        page.close()

    elsewhere = [url for url in answered if not url.startswith(f"{origin}/") and not url.startswith("blob:")]
    assert elsewhere == [], "answered from beyond the service"
    for url, failure in failed:
        assert url in BLOCKED_BY_DESIGN and failure == "csp", (url, failure)
    assert f"{base}/openapi.json" in answered
    unexpected = [e for e in errors if not any(url in e for url in BLOCKED_BY_DESIGN)]
    assert unexpected == [], "the page logged errors"


def test_a_page_that_loaded_a_script_from_elsewhere_would_be_refused_by_its_policy(api, browser):
    """The policy itself, in the browser: a script of another origin, added to the page, is
    blocked before any request leaves."""
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    try:
        page.goto(f"{api.rexec}/docs")
        page.evaluate(
            """() => new Promise(done => {
                const script = document.createElement("script");
                script.src = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js";
                script.onerror = done;
                document.head.appendChild(script);
            })"""
        )
    finally:
        page.close()
    assert failed == [("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js", "csp")]

