"""The console's dashboard load, timed in Chromium with the Performance API (issue 18's budget:
first load under 1 s on a gateway holding 1,000,000 usage records). Run by `ailurus-bench`
(phase `stats1m`) with the bridge's address, an access token and its user id; prints one JSON
object: for each range, the median and slowest of five loads of the dashboard, each measured
from navigation start to the moment its totals are on the page, plus the load event and the
statistics call's own timing.

    python3 bench/console_load.py http://127.0.0.1:18100 <access token> <user id>
"""
import json
import statistics
import sys
import time

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

# The browser the console's own test drives.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "console"))
from chromium import browser  # noqa: E402

RUNS = 5


# In the page: resolve with performance.now() when the dashboard's totals appear (a
# MutationObserver, so the moment is not a polling interval late), and the timings of the
# navigation and of the statistics call.
WAIT_TOTALS = """
const done = arguments[arguments.length - 1];
const report = () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const call = performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/data/')).pop();
  return {shown: performance.now(), load_event: nav ? nav.loadEventEnd : null,
          stats_call: call ? call.responseEnd - call.startTime : null, stats_end: call ? call.responseEnd : null};
};
const ready = () => document.querySelector('#total-requests');
if (ready()) { done(report()); return; }
new MutationObserver((_, obs) => { if (ready()) { obs.disconnect(); done(report()); } })
  .observe(document.body, {childList: true, subtree: true});
"""


def main():
    base, token, user = sys.argv[1:4]
    d = browser()
    try:
        d.get(base + "/")
        d.execute_script("sessionStorage.setItem('ailurus.console.session', arguments[0])",
                         json.dumps({"token": token, "user": user}))
        out = {}
        n = 0

        def fresh():
            # A new query string: a real navigation (a hash change alone would not reload).
            nonlocal n
            n += 1
            d.get(f"{base}/?load={n}#/dashboard")

        for rng in ["24h", "7d", "30d"]:
            shown = []
            last = None
            for _ in range(RUNS):
                if rng == "24h":
                    fresh()
                    last = d.execute_async_script(WAIT_TOTALS)
                    shown.append(last["shown"])
                else:
                    # Another range: the page is loaded; time the change to the new totals.
                    fresh()
                    d.execute_async_script(WAIT_TOTALS)
                    t0 = d.execute_script("return performance.now()")
                    d.execute_script("document.querySelector('#dash-body').replaceChildren()")
                    Select(d.find_element(By.ID, "dash-range")).select_by_visible_text(rng)
                    last = d.execute_async_script(WAIT_TOTALS)
                    shown.append(last["shown"] - t0)
                    time.sleep(0.1)
            total = d.find_element(By.ID, "total-requests").text
            out[rng] = {"median_ms": round(statistics.median(shown), 1), "max_ms": round(max(shown), 1),
                        "load_event_ms": round(last["load_event"] or 0, 1), "stats_call_ms": round(last["stats_call"] or 0, 1),
                        "requests_shown": total.split()[-1]}
        print(json.dumps(out))
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the bench's report
        print(f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}", file=sys.stderr)
        sys.exit(1)
