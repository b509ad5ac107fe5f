"""Browser tests' helpers: headless Chromium through Playwright, the
gateway's JSON, and the clock code read in a page.

Chromium is Debian's (``apt-get install chromium``), driven by the
``playwright`` package's driver: no ``playwright install``. The flags are
those DESIGN-NEXT A2 found needed here: headless, no sandbox as root, no
mDNS host candidates (aiortc cannot resolve them, so ICE would wait for
peer-reflexive ones), and no throttling of pages in the background (tests
open several).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from support import REPO
from support.gateway import GatewayProcess, http_request

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
)
CLOCK_CODE_JS = REPO / "tests" / "support" / "clockcode.js"


def chromium() -> str | None:
    """The system Chromium's path, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def api_json(gateway: GatewayProcess, path: str, token: str = "") -> Any:
    """``GET path`` on the gateway (with ``token``), its JSON; fails on an error status."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = http_request(f"{gateway.url}/{path}", headers=headers, timeout=5)
    assert status == 200, f"GET /{path}: {status} {body[:200]!r}"
    return json.loads(body)


def sources(gateway: GatewayProcess, token: str = "") -> list[dict[str, Any]]:
    """``/api/sources``: each running encoder, its viewers."""
    found: list[dict[str, Any]] = api_json(gateway, "api/sources", token)["sources"]
    return found


# -- in a page ---------------------------------------------------------------------

WATCH = """([key, selector]) => {
    window.clockRecords ??= {};
    window.clockRecords[key] = clockCode.watch(document.querySelector(selector));
}"""
# The record so far and the page's clock: one end of a measuring window.
SNAPSHOT = """key => {
    const record = window.clockRecords[key];
    return {...record, ages: record.ages.length, at: performance.now()};
}"""
AGES = "([key, start, end]) => window.clockRecords[key].ages.slice(start, end)"


def watch_clock_code(page: Any, selector: str, key: str = "main") -> None:
    """Follow the presented frames of the video ``selector`` names, as
    ``key``: the decoder is injected here, so the page carries no test code."""
    if not page.evaluate("() => 'clockCode' in window"):
        page.add_script_tag(path=str(CLOCK_CODE_JS))
    page.evaluate(WATCH, [key, selector])


def clock_record(page: Any, key: str = "main") -> dict[str, Any]:
    """Presented, decoded and unreadable frames so far; ``ages``: how many
    latencies were recorded; ``at``: the page's clock (ms)."""
    record: dict[str, Any] = page.evaluate(SNAPSHOT, key)
    return record


def clock_ages(page: Any, start: int, end: int, key: str = "main") -> list[float]:
    """The capture-to-display latencies (ms) recorded from ``start`` to ``end``."""
    ages: list[float] = page.evaluate(AGES, [key, start, end])
    return ages
