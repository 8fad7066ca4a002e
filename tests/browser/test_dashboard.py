"""The dashboard in a real browser, as a person uses it (issue 11).

One story, in order, on one control plane: log in with the code `sub
dashboard` prints; watch objects appear and become ready live after `sub
apply`; open the trained model (loss chart with the series' points, log
tail, lineage graph); run the server's playground; open the notebook; and
check that no page loaded anything from outside 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from substratus.resources.reasons import Reason
from tests.browser.conftest import Stack, login_link

OBJECTS = ["Dataset/default/verses", "Model/default/wordpairs", "Model/default/wordpairs-verses",
           "ModelServer/default/wordpairs-verses", "Notebook/default/wordpairs-verses"]
EPOCHS, STEPS_PER_EPOCH = 2, 8          # the manifest's params and fake-progress.sh
READY_TIMEOUT_MS = 420_000
FAILED = sorted(r.value for r in Reason if r.failed)


JS_ERRORS: list[str] = []


@pytest.fixture(scope="module")
def page(context: Any) -> Any:
    p = context.new_page()
    # recorded, not raised: an exception inside a Playwright callback would break its connection
    p.on("pageerror", lambda err: JS_ERRORS.append(f"{p.url}: {err}"))
    # console errors include Content-Security-Policy violations: a page that tried to load something it may not
    p.on("console", lambda msg: JS_ERRORS.append(f"{p.url}: console: {msg.text}") if msg.type == "error" else None)
    return p


def logs_loaded(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('#logs').textContent.startsWith('loading')")


@pytest.fixture(autouse=True)
def no_javascript_errors() -> Any:
    yield
    assert not JS_ERRORS, f"JavaScript errors: {JS_ERRORS}"


def api(page: Any, path: str) -> Any:
    """GET a dashboard API path from inside the page (its session cookie, same origin)."""
    return page.evaluate("async (p) => (await fetch(p)).json()", path)


def wait_all_ready(page: Any, stack: Stack) -> str:
    """'ready' once every row says so, 'failed: ...' as soon as one has a failed reason (no long timeout)."""
    handle = page.wait_for_function("""(failed) => {
        const rows = [...document.querySelectorAll('table#objects tbody tr')];
        const bad = rows.filter((r) => failed.includes(r.dataset.reason));
        if (bad.length) return 'failed: ' + bad.map((r) => `${r.dataset.key} ${r.dataset.reason}`).join(', ');
        return rows.length === 5 && rows.every((r) => r.dataset.ready === 'true') ? 'ready' : false;
    }""", arg=FAILED, timeout=READY_TIMEOUT_MS)
    return str(handle.json_value())


def watch_the_loss_chart_grow(page: Any) -> None:
    """Open the trained model while it trains: its chart gains points without a reload, then the list again."""
    row = 'tr[data-key="Model/default/wordpairs-verses"]'
    page.wait_for_selector(f'{row}[data-reason="Training"], {row}[data-ready="true"]', timeout=READY_TIMEOUT_MS)
    if page.get_attribute(row, "data-reason") != "Training":
        print("training was over before the page looked: the live chart was not watched")
        return  # failed (reported below) or over very fast: nothing live to watch
    page.click(f"{row} a")
    seen: list[tuple[str, int]] = []
    while not seen or seen[-1][0] == "Training":
        page.wait_for_timeout(250)
        reason = page.locator(".title-row .reason").first.text_content(timeout=10_000) or ""
        points = page.locator("#progress svg.chart").first
        seen.append((reason, int(points.get_attribute("data-points") or 0) if points.count() else 0))
        assert len(seen) < 600, f"still training after 150 s: {seen[-5:]}"
    page.wait_for_selector(f'#progress svg.chart[data-points="{EPOCHS * STEPS_PER_EPOCH}"]')
    during = sorted({n for reason, n in seen if reason == "Training" and n})
    assert during and during[0] < EPOCHS * STEPS_PER_EPOCH, f"the chart never showed a partial series: {seen}"
    print(f"points on the loss chart while training: {during}")
    page.click("a.back")
    page.wait_for_selector("table#objects")


def describe_failed(page: Any, stack: Stack) -> str:
    out = []
    for obj in api(page, "/ui/api/objects")["items"]:
        if not obj["status"].get("ready"):
            out.append(stack.sub("describe", obj["kind"], obj["metadata"]["name"]).stdout[-3000:])
    return "\n".join(out)


def test_login_with_the_one_time_code(page: Any, stack: Stack) -> None:
    page.goto(login_link(stack.sub).split("#")[0].replace("/ui/login", "/ui/"))
    page.wait_for_url("**/ui/login")  # not logged in: sent to the login page
    page.fill("#code", "WRONG-CODE1")
    page.click("button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    stack.shot(page, "01-login")

    link = login_link(stack.sub)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/login#code=[A-Z2-9]{5}-[A-Z2-9]{5}", link), link
    page.goto(link)
    page.wait_for_selector("table#objects")
    assert urlsplit(page.url).path == "/ui/" and "code=" not in page.url
    cookies = page.context.cookies()
    [session] = [c for c in cookies if c["name"].startswith("substratus_session_")]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/ui"
    token = (stack.sub.home / "token").read_text().strip()
    assert token not in page.content()

    page2 = page.context.new_page()
    page2.goto(link)  # the same code a second time: refused
    page2.wait_for_url("**/ui/login?error=code")
    page2.close()


def test_objects_appear_and_become_ready_live_after_apply(page: Any, stack: Stack) -> None:
    page.wait_for_selector("#live[data-state=live]")
    assert page.locator("table#objects tbody tr").count() == 0
    page.evaluate("window.__sameDocument = true")
    applied = stack.sub("apply", "-f", str(stack.manifest), timeout=300)
    assert applied.returncode == 0, applied.stderr

    for key in OBJECTS:  # rows arrive over server-sent events: no reload
        page.wait_for_selector(f'tr[data-key="{key}"]')
    watch_the_loss_chart_grow(page)
    outcome = wait_all_ready(page, stack)
    assert outcome == "ready", f"{outcome}\n{describe_failed(page, stack)}"
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded instead of updating live"
    trained = page.locator('tr[data-key="Model/default/wordpairs-verses"]')
    assert "Trained" in trained.inner_text() and "100%" in trained.inner_text()
    stack.shot(page, "02-objects")


def test_trained_model_page_has_loss_chart_log_tail_and_lineage(page: Any, stack: Stack) -> None:
    page.click('tr[data-key="Model/default/wordpairs-verses"] a')
    page.wait_for_url("**/ui/#/o/Model/default/wordpairs-verses")
    series = api(page, "/ui/api/objects/Model/default/wordpairs-verses/progress")
    total = EPOCHS * STEPS_PER_EPOCH
    assert len(series["points"]) == total and series["skipped"] == 1, series
    chart = page.locator("#progress svg.chart")
    chart.wait_for()
    assert chart.get_attribute("data-points") == str(total)
    drawn = page.locator("#progress circle.pt")
    assert drawn.count() == total
    assert [float(drawn.nth(i).get_attribute("data-y")) for i in range(total)] == \
        [p["loss"] for p in series["points"]]
    assert "1 unreadable line skipped" in page.inner_text("#progress")

    page.wait_for_function("() => document.querySelector('#logs').textContent.includes('fake-progress: step')")
    assert "train:" in page.inner_text("#logs")

    graph = page.locator("#lineage svg.lineage")
    graph.wait_for()
    assert graph.get_attribute("data-nodes") == "5" and graph.get_attribute("data-edges") == "4"
    for node in OBJECTS:
        assert page.locator(f'#lineage a[data-id="{node}"]').count() == 1, node
    assert page.locator('#lineage .edge[data-from="Dataset/default/verses"] .edge-detail').text_content() \
        .startswith("sha256:")
    assert page.locator("#conditions li.tl").count() >= 2
    assert "datasetName: verses" in page.inner_text("#spec")
    stack.shot(page, "03-model", full_page=True)
    stack.shot(page.locator("#lineage"), "04-lineage")


def test_server_playground_streams_a_generation(page: Any, stack: Stack) -> None:
    page.click('#lineage a[data-id="ModelServer/default/wordpairs-verses"]')
    page.wait_for_selector("#playground")
    rels = page.locator(".links a").evaluate_all("els => els.map(e => e.dataset.rel)")
    assert "docs" in rels and "metrics" not in rels, rels  # the fixture server has no /metrics
    page.fill("#pg-prompt", "Shall I compare thee")
    page.fill("#pg-max-tokens", "12")
    page.click("#pg-run")
    page.wait_for_function("() => document.querySelector('#pg-info').textContent.includes('/generate')")
    words = page.inner_text("#pg-output").split()
    assert len(words) == 12, words
    logs_loaded(page)
    stack.shot(page, "05-server-playground")


def test_notebook_open_button(page: Any, stack: Stack) -> None:
    page.goto(page.url.split("#")[0] + "#/o/Notebook/default/wordpairs-verses")
    button = page.locator('.links a[data-rel="open"]')
    button.wait_for()
    assert "token" not in (button.get_attribute("href") or "") and "token=" not in page.content()
    logs_loaded(page)
    stack.shot(page, "06-notebook")
    with page.context.expect_page() as opened:
        button.click()
    notebook = opened.value
    notebook.wait_for_load_state()
    assert urlsplit(notebook.url).hostname == "127.0.0.1"
    assert "stand-in for a Jupyter server" in notebook.content()
    notebook.close()


def test_live_change_after_a_second_apply(page: Any, stack: Stack) -> None:
    page.goto(page.url.split("#")[0] + "#/")
    row = 'tr[data-key="Notebook/default/wordpairs-verses"]'
    page.wait_for_selector(f'{row}[data-ready="true"]')
    head, notebook_spec, tail = stack.manifest.read_text().rpartition("spec: {modelName: wordpairs-verses}")
    assert notebook_spec and "kind: Notebook" in head.rsplit("---", 1)[-1]
    changed = stack.manifest.with_name("suspended.yaml")
    changed.write_text(head + "spec: {modelName: wordpairs-verses, suspend: true}" + tail)
    proc = stack.sub("apply", "-f", str(changed), timeout=120)
    assert proc.returncode == 0, proc.stderr
    page.wait_for_selector(f'{row}[data-reason="Suspended"]', timeout=60_000)


def test_the_page_helpers_quote_yaml_pick_ticks_and_never_inject_markup(page: Any) -> None:
    out = page.evaluate("""async () => {
        const { toYaml } = await import('/ui/static/js/yaml.js');
        const { ticks } = await import('/ui/static/js/chart.js');
        const { h, ago } = await import('/ui/static/js/dom.js');
        const el = h('p', {}, '<img src=x onerror=alert(1)>');
        return { yaml: toYaml({ a: 'true', b: [1, { c: 'x: y', d: 2 }], e: {}, f: 'plain', g: null }),
                 ticks: ticks(0, 1), html: el.innerHTML, children: el.children.length,
                 ago: ago(new Date(Date.now() - 3725000).toISOString()) };
    }""")
    assert out["yaml"] == 'a: "true"\nb:\n- 1\n- c: "x: y"\n  d: 2\ne: {}\nf: plain\ng: null'
    assert out["ticks"] == [0, 0.2, 0.4, 0.6, 0.8, 1]
    assert out["children"] == 0 and out["html"].startswith("&lt;img")
    assert out["ago"] == "1h2m"


def test_no_page_loaded_anything_from_outside_127_0_0_1(stack: Stack) -> None:
    assert stack.requests, "no requests were recorded"
    outside = [u for u in stack.requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")
               and urlsplit(u).hostname != "127.0.0.1"]
    other = [u for u in stack.requests if urlsplit(u).scheme not in ("http", "https", "data", "blob")]
    assert outside == [] and other == [], json.dumps({"outside": outside, "other": other})[:2000]


def test_the_cli_prints_only_the_link(stack: Stack) -> None:
    proc = stack.sub("dashboard", timeout=60)
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1 and "valid for" in proc.stderr
