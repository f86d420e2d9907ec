"""The console in Chromium (selenium + chromium-driver), run by tests/console.rs against a
live stack. Prints what it checks, saves a screenshot of every page, and ends with one
`RESULT {json}` line of what the pages showed, which the Rust test compares with the ledger.
A check of an endpoint this server does not have is printed as SKIPPED with the page's own
"not available on this server" notice (which is itself checked)."""

import gzip
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

from openai import OpenAI
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from chromium import browser

BRIDGE = os.environ["AILURUS_BRIDGE_URL"]
ROOT_TOKEN = os.environ["AILURUS_ROOT_TOKEN"]
ROOT_ID = os.environ["AILURUS_ROOT_ID"]
USER_TOKEN = os.environ["AILURUS_USER_TOKEN"]
OTHER_TOKEN = os.environ["AILURUS_OTHER_TOKEN"]
UPSTREAM_A = os.environ["AILURUS_UPSTREAM_A"]
UPSTREAM_B = os.environ["AILURUS_UPSTREAM_B"]
KEY_A = os.environ["AILURUS_CHANNEL_KEY_A"]
KEY_B = os.environ["AILURUS_CHANNEL_KEY_B"]
FLOW3_MODEL = "flow3-model"
# A model the second channel serves and no price covers: flagged on the Models page.
UNPRICED = "unpriced-model"
# Admin API calls a common user's credential must get 403 for: (method, path, JSON body or None).
ADMIN_CALLS = [
    ("GET", "/api/user/", None),
    ("GET", "/api/channel/", None),
    ("PUT", "/api/channel/", {"id": "primary", "status": 2}),
    ("GET", "/api/log/", None),
    ("GET", "/api/log/stat", None),
    ("GET", "/api/group/", None),
    ("POST", "/api/redemption/", {"name": "x", "count": 1, "quota": 1}),
    ("GET", "/api/token/?user=bob", None),
    ("PUT", "/api/pricing", {"model_name": "mock*", "input_usd_per_mtok": 0, "output_usd_per_mtok": 0}),
    ("DELETE", "/api/pricing?model_name=flow3-*", None),
]
SHOTS = os.environ["AILURUS_SCREENSHOTS"]
N_REQUESTS = 5
HOSTILE_MODEL = "mock <img src=x onerror=alert(5)><script>alert(6)</script>"
# A prompt with markup and a key-shaped secret: the log detail shows it as text, redacted.
FAKE_KEY = "sk-proj-abcdefghijklmnop123"
HOSTILE_PROMPT = f"hi <script>alert(7)</script><img src=x onerror=alert(8)> my key is {FAKE_KEY}"
ASSETS = ["/", "/console/app.css", "/console/app.js", "/console/api.js", "/console/dom.js", "/console/chart.js",
          "/console/pages/dashboard.js", "/console/pages/logs.js", "/console/pages/channels.js",
          "/console/pages/tokens.js", "/console/pages/users.js", "/console/pages/models.js",
          "/console/pages/playground.js", "/console/vendor/uPlot.iife.min.js", "/console/vendor/uPlot.min.css"]
# Console messages that are expected refusals: the API's answer to a call the page makes
# (403 for a common user's admin call, 404 for an endpoint this server lacks, 401 for a
# revoked token), which Chromium logs as "Failed to load resource".
EXPECTED = re.compile(r"/(api|v1)/\S* - Failed to load resource: the server responded with a status of (401|403|404)")

result = {"skipped": []}
errors = []


def log(msg):
    print(msg, flush=True)


def skip(what, why):
    log(f"SKIPPED: {what}: {why}")
    result["skipped"].append(f"{what}: {why}")


def http(method, path, headers=None, body=None):
    req = urllib.request.Request(BRIDGE + path, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def check_assets():
    total = 0
    for path in ASSETS:
        status, headers, body = http("GET", path)
        assert status == 200, f"{path}: HTTP {status}"
        csp = headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp, f"{path}: CSP {csp!r}"
        total += len(gzip.compress(body, 9))
    log(f"assets: {len(ASSETS)} files, {total} bytes gzipped (budget 300000)")
    assert total <= 300_000, total
    result["assets_gzip_bytes"] = total


def wait(d, cond, what, timeout=15):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1).until(lambda _: cond())
    except TimeoutException:
        shot(d, "failure")
        raise AssertionError(f"timed out waiting for {what}; page text: {d.find_element(By.TAG_NAME, 'body').text[:2000]}")


def css(d, sel):
    found = d.find_elements(By.CSS_SELECTOR, sel)
    return found[0] if found else None


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def no_script_ran(d, where):
    try:
        alert = d.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"{where}: a dialog opened: {text!r}")
    except NoAlertPresentException:
        pass
    assert d.execute_script("return window.__pwned === undefined"), f"{where}: injected script ran"
    assert not d.find_elements(By.CSS_SELECTOR, "main img, header img, main script"), f"{where}: markup was inserted"


def console_clean(d, where):
    for entry in d.get_log("browser"):
        if entry["level"] in ("SEVERE", "WARNING") and not EXPECTED.search(entry["message"]):
            errors.append(f"{where}: {entry['level']} {entry['message']}")
        elif entry["level"] == "SEVERE":
            log(f"  expected refusal on {where}: {entry['message']}")


def settled(d):
    """The page has loaded: no 'Loading…' left in main."""
    main = css(d, "main")
    return main is not None and "Loading…" not in main.text and css(d, "main section") is not None


def open_page(d, page, name):
    d.execute_script("location.hash = arguments[0]", f"#/{page}")
    wait(d, lambda: css(d, f"#page-{page}") is not None and settled(d), f"page {page}")
    time.sleep(0.3)
    no_script_ran(d, name)
    shot(d, name)
    console_clean(d, name)


def sign_in(d, token, user=""):
    d.get(BRIDGE + "/")
    d.execute_script("sessionStorage.clear()")
    d.get(BRIDGE + "/")
    wait(d, lambda: css(d, "#signin-token"), "the sign-in form")
    shot(d, "signin")
    d.find_element(By.ID, "signin-token").send_keys(token)
    if user:
        d.find_element(By.ID, "signin-user").send_keys(user)
    d.find_element(By.ID, "signin-submit").click()
    wait(d, lambda: css(d, "#who-name") and settled(d), "the signed-in header")


def unavailable(d, sel):
    el = css(d, sel + " .notice.unavailable")
    return el.text if el else None


def visible_pages(d):
    return [a.get_attribute("id")[4:] for a in d.find_elements(By.CSS_SELECTOR, "#nav a")]


def root_session(d):
    sign_in(d, ROOT_TOKEN, ROOT_ID)
    assert "root" in d.find_element(By.ID, "who-name").text
    pages = visible_pages(d)
    log(f"root sees: {pages}")
    assert {"channels", "users"} <= set(pages), pages
    open_page(d, "dashboard", "root-dashboard")
    nav_time = d.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n ? n.loadEventEnd : null")
    log(f"dashboard: load event at {nav_time:.0f} ms after navigation start")
    result["dashboard_load_ms"] = nav_time
    why = unavailable(d, "#dash-body")
    if why:
        skip("dashboard totals (usage statistics)", why)
    else:
        assert css(d, "#top-users") and css(d, "#total-requests"), text_of(d, "#dash-body")
    open_page(d, "users", "root-users")
    table = d.find_element(By.ID, "user-list").text
    assert "alice" in table and "root" in table, table
    # alice's display name is hostile markup: the Users page shows it as text.
    # Top up alice by $1 and see her balance change.
    before = re.search(r"alice.*?\$(\d+\.\d+)", table)
    amount = d.find_element(By.CSS_SELECTOR, "input[aria-label='Amount to add to alice']")
    amount.send_keys("1")
    d.find_element(By.CSS_SELECTOR, "button[data-topup='alice']").click()
    wait(d, lambda: "Added $1 to alice" in d.find_element(By.ID, "user-result").text, "the top-up")
    wait(d, lambda: "Loading" not in d.find_element(By.ID, "user-list").text, "the user list")
    after = re.search(r"alice.*?\$(\d+\.\d+)", d.find_element(By.ID, "user-list").text)
    assert before and after and abs(float(after.group(1)) - float(before.group(1)) - 1.0) < 1e-6, (before, after)
    log(f"top-up: alice {before.group(1)} -> {after.group(1)}")
    # Set her balance outright, then back to what it was (the dashboard later compares the
    # balance with the ledger, whose `set` records follow).
    for target in ("250", after.group(1)):
        amount = d.find_element(By.CSS_SELECTOR, "input[aria-label='Amount to add to alice']")
        amount.clear()
        amount.send_keys(target)
        d.find_element(By.CSS_SELECTOR, "button[data-set='alice']").click()
        wait(d, lambda: f"Set alice's balance to ${target}" in d.find_element(By.ID, "user-result").text, "the set")
        wait(d, lambda: "Loading" not in d.find_element(By.ID, "user-list").text, "the user list")
        now = re.search(r"alice.*?\$(\d+\.\d+)", d.find_element(By.ID, "user-list").text)
        assert now and abs(float(now.group(1)) - float(target)) < 1e-6, (target, now)
    log(f"set: alice's balance set to $250, then back to ${after.group(1)}")
    why = unavailable(d, "#redemptions")
    if why:
        skip("redemption codes", why)
    else:
        d.find_element(By.ID, "code-name").send_keys("ui-codes")
        count = d.find_element(By.ID, "code-count")
        count.clear()
        count.send_keys("2")
        d.find_element(By.ID, "code-create").click()
        wait(d, lambda: css(d, "#redemption-keys"), "the new codes")
        keys = d.find_element(By.ID, "redemption-keys").text.split()
        assert len(keys) == 2 and len(set(keys)) == 2, keys
        wait(d, lambda: d.find_element(By.ID, "redemptions").text.count("ui-codes") == 2, "the codes in the list")
        log("redemption: two codes made in the UI, shown once and listed")
    shot(d, "root-users")
    channels_flow(d)
    open_page(d, "logs", "root-logs")
    why = unavailable(d, "#page-logs")
    if why:
        skip("logs as root", why)
    prices_flow(d)
    every_page(d, "root")
    console_clean(d, "root session")


def click(d, sel):
    """Click `sel`, again if a refresh replaced it between finding and clicking."""
    for _ in range(5):
        try:
            wait(d, lambda: css(d, sel), sel).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"{sel} kept going stale")


def fill(d, element_id, value):
    el = d.find_element(By.ID, element_id)
    if el.tag_name == "select":
        Select(el).select_by_value(value)
        return
    el.clear()
    el.send_keys(str(value))


def text_of(d, sel):
    """The text of `sel` read in one script call (a refreshing list cannot make it stale)."""
    return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null", sel)


def channel_row(d, name):
    return text_of(d, f"#channel-list tr[data-channel='{name}']")


def cell(d, name, col):
    return text_of(d, f"#channel-list tr[data-channel='{name}'] td[data-col='{col}']")


def result_says(d, text):
    return text in (text_of(d, "#channel-result") or "")


def add_channel(d, name, kind, base, key, models, priority, weight):
    click(d, "#channel-add")
    for i, v in [("ch-name", name), ("ch-base", base), ("ch-key", key), ("ch-models", models),
                 ("ch-priority", priority), ("ch-weight", weight)]:
        fill(d, i, v)
    fill(d, "ch-type", kind)
    click(d, "#ch-save")
    wait(d, lambda: result_says(d, f"Channel {name} added: ok") or css(d, "#channel-result .notice.error"),
         f"channel {name} added")
    assert result_says(d, f"Channel {name} added: ok"), d.find_element(By.ID, "channel-result").text
    wait(d, lambda: channel_row(d, name), f"channel {name} in the list")


def flow3_rows(d):
    """(log id, channel) of the request-log rows of the flow-3 model, newest first."""
    rows = d.execute_script("""return [...document.querySelectorAll('#log-list tbody tr[data-id]')].map(tr => {
        const o = {id: Number(tr.dataset.id)};
        tr.querySelectorAll('td[data-col]').forEach(td => { o[td.dataset.col] = td.textContent; });
        return o; })""")
    return [(r["id"], r.get("channel")) for r in rows if r.get("model") == FLOW3_MODEL]


def one_flow3_request(d, client):
    """Send one request and wait for its row in Logs (live, without reload); its channel."""
    before = max([i for i, _ in flow3_rows(d)], default=0)
    client.chat.completions.create(model=FLOW3_MODEL, messages=[{"role": "user", "content": "flow 3"}])
    wait(d, lambda: any(i > before for i, _ in flow3_rows(d)), "the request's row in Logs", 20)
    return flow3_rows(d)[0][1]


def traffic_moves_to(d, client, name, where):
    """Requests until one is served by `name` (the workers follow a change within ~1 s), then
    three more that all must be."""
    open_page(d, "logs", where)
    first = [one_flow3_request(d, client) for _ in range(1)]
    deadline = time.time() + 10
    while first[-1] != name and time.time() < deadline:
        time.sleep(0.3)
        first.append(one_flow3_request(d, client))
    after = [one_flow3_request(d, client) for _ in range(3)]
    log(f"flow 3: channels of the requests: {first} then {after} (want {name})")
    assert first[-1] == name and after == [name] * 3, (first, after)
    shot(d, where)
    return after


def channels_flow(d):
    """Flow 3 and the Channels page: add (key write-only), edit, delete, test, disable → the
    traffic moves to the other channel in Logs, enable it back."""
    open_page(d, "channels", "root-channels-before")
    why = unavailable(d, "#page-channels")
    if why:
        skip("the Channels page and flow 3 (channels API)", why)
        return
    add_channel(d, "primary", "openai", UPSTREAM_A, KEY_A, FLOW3_MODEL, 10, 1)
    add_channel(d, "secondary", "openai", UPSTREAM_B, KEY_B, f"{FLOW3_MODEL},{UNPRICED}", 0, 1)
    add_channel(d, "scratch", "mock", "", "", "scratch-model", 0, 1)
    click(d, "button[data-delete='scratch']")
    d.switch_to.alert.accept()
    wait(d, lambda: result_says(d, "scratch deleted: ok") and not channel_row(d, "scratch"), "the deletion")
    # Edit: the secondary's weight; its key field left empty keeps the key.
    click(d, "button[data-edit='secondary']")
    assert d.find_element(By.ID, "ch-key").get_attribute("value") == "", "the edit form shows a key"
    fill(d, "ch-weight", 3)
    fill(d, "ch-priority", 1)
    fill(d, "ch-mapping", '{"flow3-alias": "flow3-model"}')
    click(d, "#ch-save")
    wait(d, lambda: result_says(d, "Channel secondary saved: ok"), "the edit")
    click(d, "button[data-edit='secondary']")
    mapping = d.find_element(By.ID, "ch-mapping").get_attribute("value")
    assert json.loads(mapping) == {"flow3-alias": "flow3-model"}, mapping
    click(d, "#channel-editor button[type='button']")
    wait(d, lambda: (cell(d, "secondary", "priority"), cell(d, "secondary", "weight")) == ("1", "3"), "the new weight")
    # Keys: the list shows the mask; neither the page nor the API answer hold a key.
    mask_a = KEY_A[:3] + "…" + KEY_A[-4:]
    assert cell(d, "primary", "key") == mask_a, channel_row(d, "primary")
    for key in (KEY_A, KEY_B):
        assert key not in d.page_source, "a channel key is in the page"
        _, _, body = http("GET", "/api/channel/?page_size=100", {"Authorization": ROOT_TOKEN, "New-Api-User": ROOT_ID})
        assert key not in body.decode(), "a channel key is in the API's answer"
        assert mask_a in body.decode(), body[:300]
    log("channels: added three, deleted one, edited one; keys shown masked only")
    click(d, "button[data-test='primary']")
    wait(d, lambda: result_says(d, "Test of primary:") , "the channel test", 35)
    test = d.find_element(By.ID, "channel-result").text
    assert "Test of primary: ok in" in test, test
    log(f"channels: {test}")
    shot(d, "root-channels")
    client = OpenAI(base_url=BRIDGE + "/v1", api_key=OTHER_TOKEN, max_retries=0)
    before = traffic_moves_to(d, client, "primary", "root-logs-flow3-primary")
    open_page(d, "channels", "root-channels-disabling")
    click(d, "button[data-toggle='primary']")
    wait(d, lambda: result_says(d, "primary disabled: ok") and cell(d, "primary", "status") == "disabled",
         "the channel disabled")
    shot(d, "root-channels-disabled")
    moved = traffic_moves_to(d, client, "secondary", "root-logs-flow3-secondary")
    open_page(d, "channels", "root-channels-enabling")
    click(d, "button[data-toggle='primary']")
    wait(d, lambda: result_says(d, "primary enabled: ok"), "the channel enabled")
    back = traffic_moves_to(d, client, "primary", "root-logs-flow3-back")
    result["flow3"] = {"before": before, "disabled": moved, "enabled": back}
    log("flow 3: disabling primary in the UI moved the traffic to secondary; enabling it moved it back")
    # Health: the workers' CHANNEL_HEALTH reports (every 5 s) reach the list.
    open_page(d, "channels", "root-channels-health")
    wait(d, lambda: re.search(r"^ok · [1-9]\d* ok", cell(d, "primary", "health") or ""), "primary's health", 20)
    log(f"channels: health of primary: {channel_row(d, 'primary')}")
    shot(d, "root-channels")


# What a page offers the keyboard: the focusable, visible controls of main in DOM order, and
# those without an accessible name (a <label>, aria-label or aria-labelledby; a button's or
# link's text).
CONTROLS_JS = """
const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
const shown = (e) => !e.disabled && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
const all = [...document.querySelectorAll('main ' + sel.split(', ').join(', main '))].filter(shown);
const key = (e) => e.id ? '#' + e.id : e.tagName.toLowerCase() + ':' + (e.textContent || e.name || e.type || '').trim().slice(0, 30);
const named = (e) => {
  if (['BUTTON', 'A', 'SUMMARY'].includes(e.tagName)) return (e.textContent || e.getAttribute('aria-label') || '').trim() !== '';
  return (e.labels && e.labels.length > 0 && [...e.labels].some(l => l.textContent.trim())) ||
         !!e.getAttribute('aria-label') || !!e.getAttribute('aria-labelledby');
};
// The page's own controls (not the rows of a table, which repeat and refresh), numbered.
const own = all.filter(e => !e.closest('tbody'));
own.forEach((e, i) => e.setAttribute('data-kb', String(i)));
return {controls: own.map(e => e.dataset.kb), names: own.map(key), total: all.length,
        unnamed: all.filter(e => !named(e)).map(key), untabbable: all.filter(e => e.tabIndex < 0).map(key)};
"""


def keyboard_and_labels(d, name):
    """Every control of main has a name and a tab stop; the skip link is the first tab stop,
    and Tab from it reaches the first controls of main (up to 12) in their order."""
    got = d.execute_script(CONTROLS_JS)
    assert not got["unnamed"], f"{name}: controls without a label: {got['unnamed']}"
    assert not got["untabbable"], f"{name}: controls out of the tab order: {got['untabbable']}"
    want = got["controls"][:12]
    # Start where a keyboard user starts: the page's first tab stop, the skip link.
    first = d.execute_script("""const all = [...document.querySelectorAll('a[href], button, input, select, textarea')]
        .filter(e => !e.disabled && e.tabIndex >= 0); all[0].focus(); return all[0].className""")
    assert first == "skip", f"{name}: the first tab stop is not the skip link but .{first}"
    reached = ["skip"]
    keyed = "const e = document.activeElement; return e.dataset.kb || (e.id ? '#' + e.id : e.tagName.toLowerCase())"
    actions = ActionChains(d)
    for _ in range(len(want) + 25):
        actions.send_keys(Keys.TAB).perform()
        reached.append(d.execute_script(keyed))
        if want and want[-1] in reached:
            break
    missing = [c for c in want if c not in reached]
    names = dict(zip(got["controls"], got["names"]))
    assert not missing, f"{name}: Tab never reached {[names[m] for m in missing]}; it went {reached}"
    # (A date input's day, month and year are tab stops of one control.)
    in_main = [c for i, c in enumerate(reached) if c in want and (i == 0 or reached[i - 1] != c)]
    assert in_main == want, f"{name}: tab order {in_main} is not the page's order {want} ({got['names']})"
    return got["total"]


def every_page(d, who):
    """Each page the session sees at 1280×800 and at phone width (390×844): screenshots,
    labels, keyboard, no sideways scrolling of the page itself (wide tables scroll in their
    own box)."""
    for page in visible_pages(d):
        d.set_window_size(1280, 800)
        open_page(d, page, f"{who}-{page}-1280x800")
        n = keyboard_and_labels(d, f"{who} {page}")
        d.set_window_size(390, 844)
        time.sleep(0.4)
        shot(d, f"{who}-{page}-390x844")
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 392, f"{who} {page}: the page is {width} px wide at 390 px"
        log(f"{who} {page}: {n} controls, all labelled and tab-reachable in order; {width} px wide at phone width")
    d.set_window_size(1280, 800)


def prices_flow(d):
    """The Models page: a channel's model without a price is flagged; pricing it in the UI
    clears the flag (through PRICES, followed by the workers), edit, remove brings it back."""
    open_page(d, "models", "root-models-unpriced")
    flags = lambda: text_of(d, "#price-flags") or ""
    price = lambda col: text_of(d, f"#price-list tr[data-price='{UNPRICED}'] td[data-col='{col}']")
    wait(d, lambda: f"secondary: {UNPRICED}" in flags(), "the unpriced flag")
    log(f"models: flagged: {flags()!r}")
    click(d, f"button[data-price-for='{UNPRICED}']")
    assert d.find_element(By.ID, "price-model").get_attribute("value") == UNPRICED
    fill(d, "price-input_usd_per_mtok", 4)
    fill(d, "price-output_usd_per_mtok", 8)
    click(d, "#price-save")
    wait(d, lambda: price("source") == "live" and UNPRICED not in flags(), "the new price, flag gone")
    click(d, f"button[data-edit-price='{UNPRICED}']")
    fill(d, "price-output_usd_per_mtok", 9)
    click(d, "#price-save")
    wait(d, lambda: price("output_usd_per_mtok") == "$9", "the edited price")
    assert price("input_usd_per_mtok") == "$4", price("input_usd_per_mtok")
    shot(d, "root-models")
    click(d, f"button[data-delete-price='{UNPRICED}']")
    d.switch_to.alert.accept()
    wait(d, lambda: price("source") is None and UNPRICED in flags(), "the price removed, flagged again")
    log("models: priced the flagged model in the UI, edited and removed it (the flag went and came back)")


def stream_in_playground(d):
    open_page(d, "playground", "user-playground-empty")
    model = d.find_element(By.ID, "play-model")
    model.clear()
    model.send_keys("mock-c40-d50")
    prompt = d.find_element(By.ID, "play-prompt")
    prompt.clear()
    prompt.send_keys("Repeat <img src=x onerror=alert(3)> and <script>alert(4)</script> please")
    d.find_element(By.ID, "play-send").click()
    lengths = []
    deadline = time.time() + 20
    while time.time() < deadline:
        lengths.append(len(d.find_element(By.ID, "play-answer").text))
        if "cost $" in d.find_element(By.ID, "play-facts").text:
            break
        time.sleep(0.1)
    facts = d.find_element(By.ID, "play-facts").text
    final = len(d.find_element(By.ID, "play-answer").text)
    partial = sorted({n for n in lengths if 0 < n < final})
    log(f"playground: {len(partial)} partial lengths before the end ({partial[:5]}…), final {final}; {facts}")
    assert final > 0 and len(partial) >= 2, (lengths, final)
    assert "latency" in facts and "tokens" in facts and "cost $" in facts, facts
    no_script_ran(d, "playground")
    shot(d, "user-playground")
    result["playground_partial_lengths"] = len(partial)


def token_flow(d):
    open_page(d, "tokens", "user-tokens")
    listing = d.find_element(By.ID, "token-list").text
    assert "<script>window.__pwned=1</script>" in listing, listing
    log("tokens: the hostile token name renders as text")
    for i, v in [("token-name", "from-the-ui"), ("token-quota", "2.5"), ("token-models", "mock*"),
                 ("token-rpm", 30), ("token-tpm", 100000), ("token-concurrency", 2)]:
        fill(d, i, v)
    d.find_element(By.ID, "token-create").click()
    wait(d, lambda: d.find_element(By.ID, "token-created").text, "the token's creation")
    why = unavailable(d, "#token-created")
    if why:
        skip("create a token in the UI, use it, see it in Logs live, revoke it and get 401", why)
        return
    key = d.find_element(By.ID, "token-key").get_attribute("value")
    assert key.startswith("sk-"), key
    click(d, "#token-copy")
    wait(d, lambda: text_of(d, "#token-copy") in ("Copied", "Press Ctrl+C"), "the copy button")
    copied = text_of(d, "#token-copy")
    row = lambda col: text_of(d, f"#token-list tr[data-token='from-the-ui'] td[data-col='{col}']")
    wait(d, lambda: row("limits"), "the new token's row")
    assert (row("limits"), row("models"), row("remain")) == ("30 rpm · 100,000 tpm · 2 at once", "mock*", "$2.5000"), \
        (row("limits"), row("models"), row("remain"))
    assert key not in text_of(d, "#token-list"), "the list shows the key"
    shot(d, "user-tokens-new-key")
    # Edit: raise rpm, drop concurrency (empty: none), keep the rest.
    click(d, "button[data-edit='from-the-ui']")
    assert d.find_element(By.ID, "tok-edit-rpm").get_attribute("value") == "30"
    fill(d, "tok-edit-rpm", 60)
    d.find_element(By.ID, "tok-edit-concurrency").clear()
    click(d, "#tok-edit-save")
    wait(d, lambda: row("limits") == "60 rpm · 100,000 tpm", "the edited limits")
    log(f"tokens: created in the UI with quota, models and rpm/tpm/concurrency, key shown once ({copied}); "
        f"edited to {row('limits')!r}")
    open_page(d, "logs", "user-logs-before")
    why = unavailable(d, "#page-logs")
    client = OpenAI(base_url=BRIDGE + "/v1", api_key=key, max_retries=0)
    if not why:
        # The page follows the log stream (a push from a worker), not a timer.
        wait(d, lambda: d.find_element(By.ID, "log-live-label").get_attribute("data-mode") == "push",
             "the log stream to open", 10)
    # The model's name is hostile markup (the mock serves any name): its log row must show it
    # as text.
    sent = time.time()
    client.chat.completions.create(model=HOSTILE_MODEL, messages=[{"role": "user", "content": HOSTILE_PROMPT}])
    if why:
        skip("the new token's row appears in Logs without reload", why)
    else:
        wait(d, lambda: HOSTILE_MODEL in d.find_element(By.ID, "log-list").text, "the new token's log row", 20)
        log(f"logs: the row appeared {time.time() - sent:.2f} s after the request was sent (pushed: "
            f"{d.find_element(By.ID, 'log-live-label').get_attribute('data-mode')})")
        assert d.find_element(By.ID, "log-live-label").get_attribute("data-mode") == "push"
        assert d.find_elements(By.CSS_SELECTOR, "#log-list tr.fresh"), "the new row is not marked"
        no_script_ran(d, "logs with a hostile model name")
        shot(d, "user-logs-live")
        log("logs: the new token's row appeared without reload; its hostile model name is text")
        click(d, "#log-list tr.fresh button")
        wait(d, lambda: css(d, "#log-request") or css(d, "#log-detail .notice"), "the log detail", 20)
        assert HOSTILE_MODEL in text_of(d, "#log-detail"), text_of(d, "#log-detail")
        request = text_of(d, "#log-request") or text_of(d, "#log-detail")
        answer = text_of(d, "#log-answer") or ""
        # The prompt as text, its key-shaped secret redacted as `audit replay` redacts it.
        assert HOSTILE_PROMPT.replace(FAKE_KEY, "sk-[redacted]") in request, request
        assert FAKE_KEY not in d.page_source, "an unredacted secret reached the page"
        assert answer and answer != "—", answer
        no_script_ran(d, "log detail")
        shot(d, "user-log-detail")
        log(f"logs: the detail shows the request (hostile markup as text, the key redacted) and the answer {answer[:40]!r}")
    open_page(d, "tokens", "user-tokens-created")
    assert key not in d.page_source, "the key shows again after the page is left"
    d.find_element(By.CSS_SELECTOR, "button[data-revoke='from-the-ui']").click()
    wait(d, lambda: "revoked" in d.find_element(By.ID, "token-created").text
         or unavailable(d, "#token-created"), "the revocation")
    shot(d, "user-tokens-revoked")
    why = unavailable(d, "#token-created")
    if why:
        skip("revoke a token in the UI", why)
        return
    try:
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "after revoke"}])
        raise AssertionError("a revoked token still works")
    except Exception as e:  # openai.AuthenticationError
        assert getattr(e, "status_code", None) == 401, repr(e)
    log("tokens: the revoked token gets 401")


def only_her_own(d):
    """Flow 5: alice's Logs and Tokens show nothing of bob's (whose requests and token exist:
    root's Logs showed them), and her log API answers only her rows."""
    rows = d.find_element(By.ID, "log-list").text
    assert FLOW3_MODEL not in rows and "bob" not in rows, rows
    _, _, body = http("GET", "/api/log/self?page_size=100", {"Authorization": f"Bearer {USER_TOKEN}"})
    items = json.loads(body)["data"]["items"]
    assert items and {r["username"] for r in items} == {"alice"}, {r["username"] for r in items}
    open_page(d, "tokens", "user-tokens-own")
    tokens = d.find_element(By.ID, "token-list").text
    assert "bob-secret-token" not in tokens, tokens
    _, _, body = http("GET", "/api/log/?username=bob&type=2", {"Authorization": ROOT_TOKEN, "New-Api-User": ROOT_ID})
    bobs = json.loads(body)["data"]["items"]
    assert bobs, "bob has no log rows"
    status, _, body = http("GET", f"/api/log/detail/{bobs[0]['trace_id']}", {"Authorization": f"Bearer {USER_TOKEN}"})
    assert status == 404 and json.loads(body)["success"] is False, (status, body)
    status, _, body = http("GET", f"/api/log/detail/{bobs[0]['trace_id']}", {"Authorization": ROOT_TOKEN, "New-Api-User": ROOT_ID})
    assert status == 200 and json.loads(body)["data"]["exchange"]["request"], (status, body[:300])
    log(f"alice: Logs and Tokens show only her own ({len(items)} log rows, all hers; no token of bob's); "
        "bob's log detail: 404 for her, shown to root")


def user_session(d):
    client = OpenAI(base_url=BRIDGE + "/v1", api_key=USER_TOKEN, max_retries=0)
    for i in range(N_REQUESTS):
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": f"request {i}"}])
    log(f"sent {N_REQUESTS} requests with the OpenAI SDK")
    sign_in(d, USER_TOKEN)
    who = d.find_element(By.ID, "who-name").text
    assert "<img src=x" in who, who
    pages = visible_pages(d)
    log(f"alice sees: {pages}")
    assert "channels" not in pages and "users" not in pages, pages
    # The admin pages are absent even by address, and their API refuses her.
    d.execute_script("location.hash = '#/users'")
    wait(d, lambda: css(d, "#page-dashboard") and settled(d), "the fallback to the dashboard")
    for page in ("channels", "users"):
        d.execute_script("location.hash = arguments[0]", f"#/{page}")
        wait(d, lambda: css(d, "#page-dashboard") and settled(d), f"the fallback from #/{page} to the dashboard")
    # Her credential on admin routes, called from the page itself: 403 in NEW-API's envelope.
    for method, path, body in ADMIN_CALLS:
        got = d.execute_async_script("""
            const [method, path, body, done] = arguments;
            const s = JSON.parse(sessionStorage.getItem('ailurus.console.session'));
            const headers = {Authorization: 'Bearer ' + s.token};
            if (body !== null) headers['Content-Type'] = 'application/json';
            fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)})
              .then(async r => done({status: r.status, body: await r.json()}))
              .catch(e => done({status: 0, body: String(e)}));""", method, path, body)
        env = got["body"]
        assert got["status"] == 403, (method, path, got)
        assert env.get("success") is False and env.get("message") and env.get("data") is None, (method, path, env)
    log(f"alice: admin pages absent from navigation and by address; {len(ADMIN_CALLS)} admin API calls answered 403 "
        f"in NEW-API's envelope (the last: {env['message']!r})")
    no_script_ran(d, "alice's header")
    token_flow(d)
    open_page(d, "logs", "user-logs")
    why = unavailable(d, "#page-logs")
    if why:
        skip("a log entry with <script> and <img onerror> renders as text", why)
    else:
        only_her_own(d)
    stream_in_playground(d)
    open_page(d, "models", "user-models")
    assert not css(d, "#price-add") and not css(d, "button[data-edit-price]"), "a common user can edit prices"
    # Let every lease and hold settle, then read the dashboard (compared with the ledger).
    last = None
    for _ in range(60):
        _, _, body = http("GET", "/api/user/self", {"Authorization": f"Bearer {USER_TOKEN}"})
        cur = json.loads(body)["data"]
        if cur == last:
            break
        last = cur
        time.sleep(1)
    d.execute_script("location.hash = '#/dashboard'")
    value = lambda i: text_of(d, f"#{i} .value")
    # The statistics take each worker's records about once a second: reload until they hold
    # every request the ledger counts (the Rust test then compares both with the ledger).
    deadline = time.time() + 20
    while True:
        d.refresh()
        wait(d, lambda: css(d, "#own-spend") and settled(d), "the dashboard")
        if not css(d, "#total-requests") or value("total-requests") == value("own-requests") \
                or time.time() > deadline:
            break
        time.sleep(1)
    time.sleep(0.5)
    shot(d, "user-dashboard")
    d.execute_script("const e = document.getElementById('dash-latency'); if (e) e.scrollIntoView()")
    shot(d, "user-dashboard-latency")
    d.execute_script("const e = document.getElementById('heatmap'); if (e) e.scrollIntoView()")
    shot(d, "user-dashboard-heatmap")
    d.execute_script("window.scrollTo(0, 0)")
    result["alice_dashboard"] = {"balance": value("own-balance"), "spent": value("own-spend"),
                                 "requests": value("own-requests")}
    if css(d, "#total-requests"):
        result["alice_totals"] = {"requests": value("total-requests"), "cost": value("total-cost"),
                                  "errors": value("total-errors"), "latency": value("total-latency"),
                                  "ttft": value("total-ttft")}
        assert css(d, "#dash-chart canvas") and css(d, "#dash-latency canvas"), "the charts are missing"
        heat = d.execute_script("return [...document.querySelectorAll('#heatmap td')].reduce((a, td) => a + Number(td.textContent || 0), 0)")
        assert str(heat) == value("total-requests"), (heat, value("total-requests"))
        top = text_of(d, "#top-models")
        assert "mock-c40-d50" in top and HOSTILE_MODEL in top, top
        for split in ("by_channel", "by_platform", "by_model"):
            Select(d.find_element(By.ID, "dash-split")).select_by_value(split)
            wait(d, lambda: css(d, "table.split tbody tr td"), f"the {split} table")
            wait(d, lambda: css(d, "#dash-split-chart canvas"), f"the {split} chart over time")
        # By model over time: one series per model (the report's six largest), in the legend.
        legend = text_of(d, "#dash-split-chart")
        assert "mock-c40-d50" in legend and HOSTILE_MODEL in legend, legend
        d.execute_script("document.getElementById('dash-split-chart').scrollIntoView()")
        shot(d, "user-dashboard-split")
        log(f"alice's dashboard totals (from /api/data/self/stats): {result['alice_totals']}; heatmap sums to {heat}")
    log(f"alice's dashboard: {result['alice_dashboard']}")
    every_page(d, "user")
    console_clean(d, "alice session")


def main():
    check_assets()
    d = browser()
    try:
        root_session(d)
        user_session(d)
    finally:
        d.quit()
    for e in errors:
        log(f"CONSOLE ERROR {e}")
    print("RESULT " + json.dumps(result), flush=True)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
