"""The system Chromium driven through chromedriver, headless at 1280×800, as the console's
browser test (run.py) and the bench's dashboard timing (bench/console_load.py) use it."""
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
              "--no-first-run", "--disable-extensions"]:
        opts.add_argument(a)
    # The page's console messages, which run.py checks for errors.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)
    d.set_script_timeout(30)
    return d
