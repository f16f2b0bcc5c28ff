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
from playwright.sync_api import TimeoutError as PlaywrightTimeout
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


# How many times a page is visited while the emulator breaks its visits (see
# `broken_by_the_emulator`).
VISITS = 3


def visit(browser, url, selector, expected):
    """Opens `url` and waits for every expected operation: (response, responses' URLs and
    statuses, failed requests, errors logged, operations rendered); no response when the page
    did not load within 30 s."""
    page = browser.new_page()
    answered, failed, errors = [], [], []
    page.on("response", lambda response: answered.append((response.url, response.status)))
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    try:
        try:
            response = page.goto(url)
        except PlaywrightTimeout:
            return None, answered, failed, errors, set()
        for operation in sorted(expected):
            try:
                page.locator(selector(operation)).first.wait_for(state="attached", timeout=20_000)
            except PlaywrightTimeout:
                break
        rendered = {operation for operation in expected if page.locator(selector(operation)).count()}
        page.wait_for_load_state("networkidle")
        return response, answered, failed, errors, rendered
    finally:
        page.close()


def document(url):
    """The OpenAPI document at `url`, asked once more if `cargo lambda watch` answered for the
    function (its own 500, after it dropped a request: the function logs no such request)."""
    answer = requests.get(url, timeout=10)
    if answer.status_code == 500 and "httpstatuses" in answer.text:
        answer = requests.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def broken_by_the_emulator(origin, answered, failed):
    """Whether `cargo lambda watch`, which serves one request of a function at a time, dropped a
    request of the page's own origin (net::ERR_ABORTED) that the function answered, or answered
    500 itself after it did: the local emulator's fault, never the service's (whose log shows
    each of those requests answered), seen in about one run of this module in five, as is a page
    whose load never ends. Such a visit is made again, `VISITS` times in all."""
    ours = lambda url: url.startswith(f"{origin}/")  # noqa: E731
    return (any(ours(url) and failure == "net::ERR_ABORTED" for url, failure in failed)
            or any(ours(url) and status == 500 for url, status in answered))


@pytest.mark.parametrize("prefix", ["api", "rexec"])
@pytest.mark.parametrize("page_name,selector", PAGES, ids=[name for name, _ in PAGES])
def test_each_page_renders_every_operation_from_the_service_alone(api, browser, prefix, page_name, selector):
    base = f"{api.ndp if prefix == 'api' else api.rexec}"
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    expected = operations(document(f"{base}/openapi.json"))
    assert expected, "the document has operations"

    for _ in range(VISITS):
        response, answered, failed, errors, rendered = visit(browser, f"{base}/{page_name}", selector, expected)
        if response is not None and not broken_by_the_emulator(origin, answered, failed):
            break
    assert response is not None, f"the page did not load; failed requests: {failed}"
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp
    assert rendered == expected

    urls = [url for url, _ in answered]
    elsewhere = [url for url in urls if not url.startswith(f"{origin}/") and not url.startswith("blob:")]
    assert elsewhere == [], "answered from beyond the service"
    for url, failure in failed:
        assert url in BLOCKED_BY_DESIGN and failure == "csp", (url, failure)
    assert f"{base}/openapi.json" in urls
    unexpected = [e for e in errors if not any(url in e for url in BLOCKED_BY_DESIGN)]
    assert unexpected == [], "the page logged errors"


def test_a_page_that_loaded_a_script_from_elsewhere_would_be_refused_by_its_policy(api, browser):
    """The policy itself, in the browser: a script of another origin, added to the page, is
    blocked before any request leaves."""
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(api.rexec))
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
        page.wait_for_load_state("networkidle")
    finally:
        page.close()
    elsewhere = [(url, failure) for url, failure in failed if not url.startswith(f"{origin}/")]
    assert elsewhere == [("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js", "csp")]

