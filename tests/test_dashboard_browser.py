"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python package; Playwright's own browser downloads are never used).

The proxy runs in-process (`harness.ProxyThread`) with fake backends, so the
``memory_keyring`` fixture is the keyring the proxy writes to. Screenshots
(light and dark, desktop and phone) go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from dashboard_helpers import CHAT_ROUTE, KEY_NAME, Dash, start_dash
from proxy_fixtures import USER, clients, fakes, proxies, status_of, wait_logged, wait_until

__all__ = ["clients", "fakes", "proxies"]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a foreign host name for the cross-origin tests, resolved to this machine
    "--host-resolver-rules=MAP evil.test 127.0.0.1",
]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

try:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright
except ImportError:  # pragma: no cover - the skip below says what is missing
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None,
        reason="the Python package playwright is not installed (pip install playwright)",
    ),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)",
    ),
]


# --------------------------------------------------------------------------- browser


class Browser:
    """One fresh Chromium profile; every page's console errors and page errors are kept."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.problems: list[str] = []
        self.console: list[str] = []

    def page(self, url: str | None = None, *, watch: bool = True) -> Page:
        page = self.context.new_page()
        if watch:
            page.on("console", self._console)
            page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        if url is not None:
            page.goto(url)
        return page

    def _console(self, msg: ConsoleMessage) -> None:
        self.console.append(f"{msg.type}: {msg.text}")
        if msg.type in ("error", "assert"):
            self.problems.append(f"console {msg.type}: {msg.text} at {msg.location}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert sync_playwright is not None
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
        )
        context.set_default_timeout(15000)
        b = Browser(context)
        try:
            yield b
        finally:
            context.close()


@pytest.fixture
def dash(fakes: Any, proxies: Any, tmp_path: Path) -> Dash:
    return start_dash(fakes, proxies, tmp_path, group=True)


def shot(page: Page, name: str, *, full: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard_{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def until(page: Page, expr: str) -> None:
    """Wait until the JavaScript expression is true (as a function: the page's
    CSP forbids the eval a string predicate would need)."""
    page.wait_for_function(f"() => ({expr})")


def settle(page: Page) -> None:
    """Wait for the first status poll, the keys and the request list to be drawn."""
    page.wait_for_selector('article[data-backend="a"]')
    page.wait_for_selector("#key-list .key")
    until(page, "document.querySelector('#conn').textContent.startsWith('live')")


def make_traffic(d: Dash, clients: Any) -> None:
    """Served requests on a and b, and one that fails over from a to b."""
    oc = clients.openai(d.p)
    oc.chat.completions.create(model="one", messages=USER)
    oc.chat.completions.create(model="two", messages=USER)
    d.fo.status(500, times=1)
    oc.chat.completions.create(model="one", messages=USER)
    logged(d, 3)


def logged(d: Dash, n: int) -> None:
    """Wait until the request log holds ``n`` requests."""
    wait_logged(d.p, n)


# --------------------------------------------------------------------------- tests


def test_page_shows_backends_and_requests_with_attempts(
    browser: Browser, dash: Dash, clients: Any
) -> None:
    make_traffic(dash, clients)
    page = browser.page(dash.p.url + "/ui")
    settle(page)

    # backends: health, circuit, load bar with the saturation line, no-key / group badges
    for name in ("a", "b", "c", "v1", "v2"):
        assert page.locator(f'article[data-backend="{name}"]').count() == 1
    card_b = page.locator('article[data-backend="b"]')
    assert "circuit closed" in card_b.inner_text()
    mark = card_b.locator(".bar .mark")
    assert mark.evaluate("el => el.style.left") == "80%"
    assert card_b.locator(".bar").get_attribute("role") == "meter"
    v1 = page.locator('article[data-backend="v1"]').inner_text()
    assert "active in vllm" in v1
    assert "inactive in vllm" in page.locator('article[data-backend="v2"]').inner_text()
    # the latency sparkline of a backend that served requests in the last hour
    page.wait_for_selector('article[data-backend="b"] svg.spark path.line', state="attached")
    label = card_b.locator("svg.spark").get_attribute("aria-label") or ""
    assert "2 request(s)" in label, label

    # requests: newest first; the failed-over one expands to its two attempts
    until(page, "document.querySelectorAll('#request-list > li').length >= 3")
    first = page.locator("#request-list > li").first
    assert "2 attempts" in first.inner_text()
    first.locator("summary").click()
    attempts = first.locator("ol.attempts > li")
    attempts.nth(1).wait_for()
    assert attempts.count() == 2
    a1, a2 = attempts.nth(0).inner_text(), attempts.nth(1).inner_text()
    assert "failed" in a1 and "HTTP 500" in a1 and "server error" in a1, a1
    assert "served" in a2 and " on b" in a2, a2
    plan = first.locator("ol.plan > li")
    assert plan.count() == 2
    assert all(" — " in plan.nth(i).inner_text() for i in range(2))  # each with its reason
    # each planned model with its tier from the config
    assert "(m1 · tier local)" in plan.nth(0).inner_text(), plan.nth(0).inner_text()

    # filters: outcome, backend
    page.select_option("#f-backend", "a")
    until(page, "document.querySelectorAll('#request-list > li').length === 2")
    page.select_option("#f-backend", "")
    page.select_option("#f-outcome", "failed")
    until(page, "document.querySelector('#req-note').textContent.includes('No requests match')")
    page.select_option("#f-outcome", "")
    until(page, "document.querySelectorAll('#request-list > li').length === 3")

    # live: a new request shows up without reloading the page; asked for a
    # route, its details show the route's description
    clients.openai(dash.p).chat.completions.create(model="chat", messages=USER)
    until(page, "document.querySelectorAll('#request-list > li').length === 4")
    newest = page.locator("#request-list > li").first
    newest.locator("summary").click()
    newest.locator("ol.plan > li").first.wait_for()
    facts = newest.locator("dl.facts").inner_text()
    assert f"chat · direct · {CHAT_ROUTE}" in facts, facts

    assert browser.problems == [], browser.problems


def test_screenshots_light_dark_desktop_phone(browser: Browser, dash: Dash, clients: Any) -> None:
    make_traffic(dash, clients)
    for _ in range(3):
        clients.openai(dash.p).chat.completions.create(model="two", messages=USER)
    dash.fc.refuse()  # something red on the page: a failed request, a backend down
    with pytest.raises(openai.APIError):
        clients.openai(dash.p).chat.completions.create(model="cloudy", messages=USER)
    page = browser.page(dash.p.url + "/ui")
    settle(page)
    until(page, "document.querySelectorAll('#request-list > li').length >= 6")
    page.locator("#request-list > li").nth(3).locator("summary").click()
    page.locator("#request-list > li").nth(3).locator("ol.attempts > li").first.wait_for()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            page.wait_for_timeout(300)
            shot(page, f"{scheme}_{label}")
    assert browser.problems == [], browser.problems


def test_screenshots_busy(browser: Browser, dash: Dash) -> None:
    """What the page looks like under load, mid-switch, with an hour of latency:
    /status and /ui/api/latency are rewritten in the browser (made-up numbers)
    to show the saturation bars, the switch progress and the sparklines."""

    def busy_status(route: Any) -> None:
        st = route.fetch().json()
        for name, n in (("a", 4), ("b", 1), ("c", 3), ("v2", 2)):
            st["backends"][name]["in_flight"] = n
        st["backends"]["c"]["no_key"] = True
        st["switching"] = {
            "vllm": {
                "from": "v1",
                "to": "v2",
                "mode": "managed",
                "phase": "starting",
                "failed_in": None,
                "error": None,
                "output": None,
                "notes": [],
                "elapsed_s": 12.4,
                "phase_s": 3.1,
            }
        }
        st["active"]["vllm"] = None
        route.fulfill(json=st)

    def hour_of_latency(route: Any) -> None:
        data = route.fetch().json()
        for k, name in enumerate(data["backends"]):
            for i, point in enumerate(data["backends"][name]):
                if name == "v1" or (name == "b" and 20 <= i < 24):
                    continue
                avg = 300 + 150 * k + 120 * math.sin(i / (4 + k)) + 40 * ((i * 7) % 5)
                point.update(count=3, avg_ms=round(avg, 1), p95_ms=avg * 1.6, max_ms=avg * 2)
                point["failures"] = 1 if name == "a" and i in (31, 32, 50) else 0
        route.fulfill(json=data)

    page = browser.page()
    page.route("**/status", busy_status)
    page.route("**/ui/api/latency*", hour_of_latency)
    page.goto(dash.p.url + "/ui")
    settle(page)
    page.wait_for_selector('article[data-backend="c"] svg.spark path.line', state="attached")
    until(page, "document.querySelector('#progress-vllm').textContent.includes('Switching')")
    assert page.locator('article[data-backend="a"] .bar.hot').count() == 1
    assert page.locator('article[data-backend="b"] .bar.hot').count() == 0
    assert "no key" in page.locator('article[data-backend="c"]').inner_text()
    current = page.locator("#progress-vllm .phases li.current").inner_text()
    assert current == "starting"
    assert page.locator("#switch-vllm").is_disabled()
    shot(page, "busy_light_desktop", full=False)
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size(PHONE)
    page.locator("#controls").scroll_into_view_if_needed()
    shot(page, "busy_dark_phone_controls", full=False)
    page.locator("#backends").scroll_into_view_if_needed()
    shot(page, "busy_dark_phone_backends", full=False)
    assert browser.problems == [], browser.problems


def test_preference_and_group_controls_change_status(browser: Browser, dash: Dash) -> None:
    page = browser.page(dash.p.url + "/ui")
    settle(page)
    assert status_of(dash.p)["preference"] == "auto"
    assert page.locator('#pref-options input[value="auto"]').is_checked()
    page.get_by_label("Local only").check()
    assert wait_until(lambda: status_of(dash.p)["preference"] == "local_only")
    until(page, "document.querySelector('#pref-source').textContent.includes('Local only')")
    # the tray (or curl) changes it: the page follows
    dash.p.call(dash.p.rt.set_preference, "prefer_cloud")
    until(page, "document.querySelector('#pref-options input[value=prefer_cloud]').checked")
    # what is remembered, said as it is; and the way back to the config's
    until(page, "document.querySelector('#pref-source').textContent.includes('across restarts')")
    reset = page.locator("#pref-reset")
    assert reset.is_visible() and "Auto (as configured)" in reset.inner_text()
    reset.click()
    assert wait_until(lambda: status_of(dash.p)["preference_source"] == "config")
    until(page, "document.querySelector('#pref-source').textContent.includes('from the config')")
    assert not reset.is_visible()

    # a group without a switch section: the button changes routing (/admin/active)
    assert status_of(dash.p)["active"]["vllm"] == "v1"
    group = page.locator('[data-group="vllm"]')
    group.get_by_label("v2").check()
    group.get_by_role("button", name="Route to it").click()
    assert wait_until(lambda: status_of(dash.p)["active"]["vllm"] == "v2")
    until(
        page,
        "document.querySelector('article[data-backend=v2]').textContent"
        ".includes('active in vllm') && !document.querySelector('article[data-backend=v2]')"
        ".textContent.includes('inactive')",
    )
    assert browser.problems == [], browser.problems


def test_key_form_sets_replaces_deletes_and_never_shows_the_value(
    browser: Browser, dash: Dash, memory_keyring: Any
) -> None:
    secret1 = "sk-dashboard-test-0123456789abcdef"
    secret2 = "sk-dashboard-test-replaced-9876543210"
    bodies: list[str] = []
    urls: list[str] = []

    page = browser.page()

    def keep(response: Any) -> None:
        urls.append(response.url)
        with contextlib.suppress(Exception):  # redirects and aborted ones have no body
            bodies.append(response.text())

    page.on("response", keep)
    page.goto(dash.p.url + "/ui#keys")
    settle(page)
    key = page.locator(f'[data-key="{KEY_NAME}"]')
    assert "not set" in key.inner_text()
    field = page.locator(f"#key-{KEY_NAME}")
    assert field.get_attribute("type") == "password"
    assert page.evaluate("document.activeElement.id") == f"key-{KEY_NAME}"  # opened at #keys

    field.fill(secret1)
    key.get_by_role("button", name="Save").click()
    until(page, "document.querySelector('#key-msg').textContent.includes('saved')")
    assert memory_keyring.entries[("traywire", KEY_NAME)] == secret1
    assert dash.p.call(lambda: dash.p.rt.keys.get("c")) == secret1
    until(page, f"document.querySelector('[data-key={KEY_NAME}] .badge').textContent === 'set'")
    field = page.locator(f"#key-{KEY_NAME}")
    assert field.input_value() == ""

    # replace
    field.fill(secret2)
    page.locator(f'[data-key="{KEY_NAME}"]').get_by_role("button", name="Replace").click()
    until(page, "document.querySelector('#key-msg').textContent.includes('replaced')")
    assert memory_keyring.entries[("traywire", KEY_NAME)] == secret2
    assert dash.p.call(lambda: dash.p.rt.keys.get("c")) == secret2
    assert page.locator(f"#key-{KEY_NAME}").input_value() == ""

    # the value is nowhere in the page, its URL or anything the proxy sent
    html = page.content()
    text = page.inner_text("body")
    for secret in (secret1, secret2):
        assert secret not in html and secret not in text
        assert not any(secret in u for u in urls)
        assert not any(secret in b for b in bodies)
    values = page.evaluate("[...document.querySelectorAll('input')].map(i => i.value)")
    assert secret1 not in values and secret2 not in values

    # delete (two clicks: the first only arms the button)
    delete = page.locator(f'[data-key="{KEY_NAME}"]').get_by_role("button", name="Delete")
    delete.click()
    page.locator(f'[data-key="{KEY_NAME}"]').get_by_role("button", name="Confirm delete").click()
    until(page, "document.querySelector('#key-msg').textContent.includes('deleted')")
    assert ("traywire", KEY_NAME) not in memory_keyring.entries
    assert dash.p.call(lambda: dash.p.rt.keys.get("c")) is None
    until(page, f"document.querySelector('[data-key={KEY_NAME}] .badge').textContent === 'not set'")
    assert browser.problems == [], browser.problems


# --------------------------------------------------------------------------- cross-origin


EVIL_PAGE = """<!doctype html>
<html><body>
<h1>totally harmless</h1>
<form id="urlenc" method="post" action="{target}/admin/preference" target="f1">
  <input name="preference" value="local_only">
</form>
<form id="plain" method="post" action="{target}/admin/preference" enctype="text/plain"
      target="f2">
  <input name='{{"preference": "cloud_only", "x": "' value='"}}'>
</form>
<form id="keys" method="post" action="{target}/ui/api/keys" enctype="text/plain" target="f3">
  <input name='{{"name": "cloud_key", "value": "evil-value-123", "x": "' value='"}}'>
</form>
<iframe name="f1"></iframe><iframe name="f2"></iframe><iframe name="f3"></iframe>
<pre id="out"></pre>
<script>
  const out = document.getElementById("out");
  const note = (t) => {{ out.textContent += t + "\\n"; }};
  document.getElementById("urlenc").submit();
  document.getElementById("plain").submit();
  document.getElementById("keys").submit();
  fetch("{target}/admin/preference", {{method: "POST", mode: "no-cors",
        headers: {{"Content-Type": "text/plain"}}, body: '{{"preference": "prefer_cloud"}}'}})
    .then(() => note("no-cors sent"), (e) => note("no-cors failed " + e));
  fetch("{target}/ui").then((r) => r.text()).then(
      (t) => note("READ THE PAGE " + t.length), (e) => note("read blocked"));
  fetch("{target}/admin/preference", {{method: "POST",
        headers: {{"Content-Type": "application/json", "X-Traywire-Session": "guess"}},
        body: '{{"preference": "prefer_cloud"}}'}})
    .then((r) => note("json status " + r.status), (e) => note("json blocked"));
  setTimeout(() => note("done"), 1500);
</script>
</body></html>
"""


class EvilSite:
    """A small aiohttp server on another port serving a page that attacks the proxy."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def _start(self) -> None:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text=EVIL_PAGE.format(target=self.target), content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> EvilSite:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _wait_text(page: Page, selector: str, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        got = page.inner_text(selector)
        if text in got:
            return got
        page.wait_for_timeout(100)
    raise AssertionError(f"{text!r} not in {got!r}")


@pytest.mark.parametrize("evil_host", ["127.0.0.1", "evil.test"])
def test_cross_origin_form_post_is_refused(
    browser: Browser, dash: Dash, memory_keyring: Any, evil_host: str
) -> None:
    """A page from another localhost port, or from another site, posts forms
    (url-encoded, and text/plain shaped like JSON) and fetches at the proxy:
    nothing changes, and it cannot read the page with the session token."""
    proxy_url = dash.p.url
    hits: list[tuple[str, int]] = []
    with EvilSite(proxy_url) as evil:
        page = browser.page(watch=False)
        page.on(
            "response",
            lambda r: hits.append((r.url, r.status)) if r.url.startswith(proxy_url) else None,
        )
        page.goto(f"http://{evil_host}:{evil.port}/")
        out = _wait_text(page, "#out", "done")
    assert "READ THE PAGE" not in out and "read blocked" in out, out
    assert "json blocked" in out, out  # the preflight fails: no CORS
    posts = [(u, s) for u, s in hits if u.endswith(("/admin/preference", "/ui/api/keys"))]
    assert len(posts) >= 3, hits  # the forms were really sent ...
    assert all(s in (403, 415) for _, s in posts), posts  # ... and refused
    assert status_of(dash.p)["preference"] == "auto"
    assert ("traywire", KEY_NAME) not in memory_keyring.entries


def test_foreign_host_name_cannot_load_the_dashboard(browser: Browser, dash: Dash) -> None:
    """DNS rebinding: evil.test resolving to 127.0.0.1 reaches the proxy's port,
    but the Host check refuses it, so the page (and its token) never loads."""
    page = browser.page(watch=False)
    response = page.goto(f"http://evil.test:{dash.p.server.port}/ui")
    assert response is not None and response.status == 403
    assert "traywire-session" not in page.content()


# --------------------------------------------------------------------------- pages, rows, keys


def _ids(page: Page) -> list[int]:
    return [
        int(x)
        for x in page.eval_on_selector_all(
            "#request-list details", "els => els.map(e => e.dataset.id)"
        )
    ]


def test_request_list_pages_after_a_screenful_with_endpoint_and_skipped_attempts(
    browser: Browser, dash: Dash, clients: Any
) -> None:
    oc = clients.openai(dash.p)
    # a and b refuse: once their circuits are open (2 failures each), a request
    # skips both without trying them
    dash.fo.refuse()
    dash.fv.refuse()
    for _ in range(4):
        with contextlib.suppress(openai.APIError):
            oc.with_options(max_retries=0).chat.completions.create(model="one", messages=USER)
    dash.fo.ok()
    dash.fv.ok()
    # back up: after the cooldown a trial request may close each circuit
    assert wait_until(
        lambda: all(status_of(dash.p)["backends"][n]["circuit"] != "open" for n in "ab"), 15
    ), status_of(dash.p)["backends"]
    total = 40
    for _ in range(total - 4):
        oc.chat.completions.create(model="two", messages=USER)
    logged(dash, total)
    page = browser.page(dash.p.url + "/ui")
    settle(page)
    per_page = page.evaluate("Math.max(8, Math.min(40, Math.floor((innerHeight - 220) / 42)))")
    assert 8 <= per_page < total // 2
    until(page, f"document.querySelectorAll('#request-list > li').length === {per_page}")
    until(page, "document.querySelector('#page-no').textContent.startsWith('Page 1')")
    assert page.inner_text("#page-no") == f"Page 1 · requests 1–{per_page} (newest first)"
    assert page.is_visible("#older") and not page.is_visible("#newer")
    # a screenful: the list is no taller than the window
    height = page.eval_on_selector("#request-list", "el => el.getBoundingClientRect().height")
    assert height <= page.evaluate("innerHeight"), height
    # each row names the endpoint
    first_row = page.locator("#request-list > li").first.inner_text()
    assert "/v1/chat/completions" in first_row, first_row
    page1 = _ids(page)
    shot(page, "requests_page1", full=False)

    page.click("#older")
    until(page, "document.querySelector('#page-no').textContent.startsWith('Page 2')")
    page2 = _ids(page)
    assert len(page2) == per_page and max(page2) < min(page1)
    assert "live updates paused" in page.inner_text("#page-no")
    assert page.is_visible("#newer")
    # older pages hold still while new requests come in
    oc.chat.completions.create(model="two", messages=USER)
    logged(dash, total + 1)
    time.sleep(2)
    assert _ids(page) == page2

    # to the last page: the rows with a skipped attempt are among the oldest
    while page.is_visible("#older"):
        before = _ids(page)
        page.click("#older")
        until(page, f"document.querySelector('#request-list details').dataset.id != '{before[0]}'")
    assert page.is_visible("#newest")
    skipped = page.locator("#request-list .tries .skipped")
    assert skipped.count() >= 1, page.inner_text("#request-list")
    tries = skipped.first.locator("xpath=..")
    assert "skipped" in tries.inner_text()
    assert "circuit open" in (tries.get_attribute("title") or ""), tries.get_attribute("title")
    shot(page, "requests_last_page", full=False)

    page.click("#newest")
    until(page, "document.querySelector('#page-no').textContent.startsWith('Page 1')")
    assert max(_ids(page)) > max(page1)  # the request made while paged is on top now
    assert browser.problems == [], browser.problems


def test_sparklines_are_readable_with_the_latest_value(
    browser: Browser, dash: Dash, clients: Any
) -> None:
    make_traffic(dash, clients)
    page = browser.page(dash.p.url + "/ui")
    settle(page)
    page.wait_for_selector('article[data-backend="b"] svg.spark path.line', state="attached")
    card = page.locator('article[data-backend="b"]')
    box = card.locator("svg.spark").bounding_box()
    assert box is not None and box["height"] >= 48, box
    latest = card.locator(".spark-legend .latest").inner_text()
    assert latest.startswith("latest ") and " ms (" in latest, latest
    assert card.locator("svg.spark circle.dot").count() == 1
    shot(page, "sparkline", full=False)
    assert browser.problems == [], browser.problems


def test_without_a_keyring_the_key_form_says_why_and_takes_no_input(
    browser: Browser, dash: Dash, fail_keyring: Any
) -> None:
    page = browser.page(dash.p.url + "/ui#keys")
    page.wait_for_selector('article[data-backend="a"]')
    page.wait_for_selector("#keyring-problem:not([hidden])")
    text = page.inner_text("#keyring-problem")
    assert "keyring is not usable here" in text and "cannot be saved from this page" in text
    assert text.index("env:VAR") < text.index("Secret Service"), text
    assert "traywire doctor" in text
    fields = page.locator("#keys form input, #keys form button")
    assert fields.count() >= 4
    for i in range(fields.count()):
        assert fields.nth(i).is_disabled(), fields.nth(i).evaluate("el => el.outerHTML")
        assert fields.nth(i).get_attribute("aria-describedby") == "keyring-problem"
    shot(page, "keys_no_keyring", full=False)
    assert browser.problems == [], browser.problems
