"""Issue 18, the status page in a real headless browser (Debian's chromium through its
chromedriver), against a Redis filled by real evaluates on the simulator: every node, the
last decision and its explanation, in-place refresh, basic auth, no secret in the page."""

from __future__ import annotations

import base64
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from balancer.runtime import evaluate
from balancer.web import AUTH_ENV, run_web
from tests.runtime.scenarios import CPU_HOT
from tests.support.steps import StepDispatcher, evaluate_until_migrate, runtime_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[1]

if (CHROMEDRIVER is None or CHROMIUM is None) and not os.environ.get("CI"):
    pytest.skip("no chromium/chromedriver here (CI installs them: .ci/run)",
                allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER and CHROMIUM, "CI must have chromium and chromedriver (.ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def filled(pvesim_factory: Callable[..., Any], redis_url: str) -> Any:
    """A runtime whose Redis holds a real cycle's state: one migration done, one decided."""
    running = pvesim_factory(CPU_HOT, speed=10.0)
    rt = runtime_for(running, redis_url)
    dispatch = StepDispatcher()
    evaluate_until_migrate(rt, dispatch)
    while dispatch.pending:
        running.sim.advance(5)
        dispatch.run(rt, dispatch.pending.pop(0))
    rt.store.drains.set("pve2", "alice@admin1", "psu swap")
    evaluate(rt, dispatch)  # publishes the drain's progress and the newest decision
    return rt


def serve(rt: Any, monkeypatch: pytest.MonkeyPatch, auth: str | None = None) -> Iterator[str]:
    if auth:
        monkeypatch.setenv(AUTH_ENV, auth)
    else:
        monkeypatch.delenv(AUTH_ENV, raising=False)
    stop, bound = threading.Event(), []
    thread = threading.Thread(target=run_web, args=(rt.config, 0, "127.0.0.1"),
                              kwargs={"ready": bound.append, "stop": stop}, daemon=True)
    thread.start()
    wait_until(lambda: bound, timeout=20, what="the status page listening")
    yield f"http://127.0.0.1:{bound[0]}"
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def page(filled: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from serve(filled, monkeypatch)


def test_the_page_shows_every_node_and_the_last_decision_and_refreshes_itself(
        browser: Any, page: str, filled: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    rt = filled
    browser.get(page + "/")
    nodes = {e.get_attribute("data-node") for e in browser.find_elements(By.CSS_SELECTOR,
                                                                          "article.node")}
    assert nodes == {"pve1", "pve2", "pve3"}
    pve2 = browser.find_element(By.CSS_SELECTOR, 'article.node[data-node="pve2"]')
    assert "drained" in pve2.text
    last = rt.store.history.decisions(1)[0]
    first = browser.find_element(By.CSS_SELECTOR, "details.decision")
    assert last["explanation"][0] in first.text
    first.find_element(By.TAG_NAME, "summary").click()
    explanation = first.find_element(By.CSS_SELECTOR, "ol.explanation")
    assert explanation.is_displayed()
    assert last["explanation"][1] in explanation.text
    history = browser.find_element(By.ID, "history").text
    assert "pve1 → pve3" in history and "succeeded" in history

    # The page refreshes in place: a pause set now shows without a reload, and the
    # decision opened above stays open.
    rt.store.pause.set("bob@admin2", "incident 42")
    wait_until(lambda: "incident 42" in browser.find_element(By.ID, "main").text, timeout=30,
               what="the pause banner after an in-place refresh")
    reopened = browser.find_element(By.CSS_SELECTOR, "details.decision")
    assert reopened.get_attribute("open") is not None

    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "status-page.png")

    source = browser.page_source
    assert rt.config.proxmox.token_value.reveal() not in source

    # Readable on a phone: nothing wider than the screen but the tables' own cells.
    browser.set_window_size(390, 844)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px wider than a phone screen"


def test_the_first_paint_needs_no_script(page: str, filled: Any) -> None:
    """The HTML as served (no script run) already holds every node and the last decision."""
    html = requests.get(page + "/", timeout=10).text
    for name in ("pve1", "pve2", "pve3"):
        assert f'data-node="{name}"' in html
    headline = filled.store.history.decisions(1)[0]["explanation"][0]
    assert headline.replace(">", "&gt;") in html
    assert '<noscript><meta http-equiv="refresh"' in html


def test_api_status_is_the_status_command_json(page: str, filled: Any) -> None:
    from balancer.status import collect_status

    got = requests.get(page + "/api/status", timeout=10).json()
    want = collect_status(filled.store, filled.config)  # what `status --json` prints
    for volatile in ("last_evaluate_age_seconds", "lock"):
        got.pop(volatile), want.pop(volatile)
    assert got == want
    assert {n["name"] for n in got["nodes"]} == {"pve1", "pve2", "pve3"}
    asked = requests.get(page + "/api/status?decisions=1", timeout=10).json()
    assert len(asked["decisions"]) == 1
    assert requests.get(page + "/api/status?decisions=x", timeout=10).status_code == 400


def test_basic_auth_asks_and_lets_the_right_user_in(
        browser: Any, filled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By

    for url in serve(filled, monkeypatch, auth="ops:s3cret-pass"):
        bare = requests.get(url + "/", timeout=10)
        assert bare.status_code == 401
        assert bare.headers["WWW-Authenticate"] == 'Basic realm="pve-balancer"'
        assert requests.get(url + "/api/status", auth=("ops", "wrong"),
                            timeout=10).status_code == 401
        browser.get(url + "/")
        assert browser.find_elements(By.CSS_SELECTOR, "article.node") == []
        token = base64.b64encode(b"ops:s3cret-pass").decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                {"headers": {"Authorization": f"Basic {token}"}})
        browser.get(url + "/")
        assert len(browser.find_elements(By.CSS_SELECTOR, "article.node")) == 3
        assert "s3cret-pass" not in browser.page_source


def test_basic_auth_refuses_garbage_with_401_not_500(filled: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for url in serve(filled, monkeypatch, auth="ops:pässwörd"):
        for header in ("Basic !!!notbase64", "Basic " + base64.b64encode(
                "ops:wrong-ü".encode()).decode(), "Basic w7w=", "Bearer x"):
            got = requests.get(url + "/", headers={"Authorization": header}, timeout=10)
            assert got.status_code == 401, header
        right = base64.b64encode("ops:pässwörd".encode()).decode()
        assert requests.get(url + "/api/status", headers={"Authorization": f"Basic {right}"},
                            timeout=10).status_code == 200
