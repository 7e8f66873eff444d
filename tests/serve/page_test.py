"""The chat page of `gptkit serve` in headless Chromium (Debian chromium + chromium-driver, driven by selenium):
load it, check Shift+Enter adds a line and Enter sends, see streamed text appear, press Stop mid-stream, check
a user's HTML is shown as text (never parsed), new chat, phone width without horizontal scrolling, and save a
screenshot. The server must run with --step-delay (tests/cli/serve.sh uses 200 ms) and a model that does not stop
by itself under greedy decoding (the test's barely trained base model), so a reply streams long enough to be
stopped: the page is set to temperature 0 and 20 tokens.
Prints PASS/FAIL/SKIP lines.

usage: page_test.py URL SCREENSHOT.png
"""
import shutil
import sys
import time

FAILED = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name)
    if not ok:
        FAILED.append(name)
        print("  " + str(detail)[:600])


def wait_for(pred, timeout=30):
    """Polls pred; the timeout only turns a hang into a FAIL (never a timing verdict)."""
    t = time.time() + timeout
    while time.time() < t:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001  (an element not there yet)
            pass
        time.sleep(0.05)
    return False


def main():
    url, shot = sys.argv[1], sys.argv[2]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not browser or not driver_bin:
        print("SKIP serve_page: chromium / chromium-driver not installed (scripts/setup.sh installs them)")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,800"):
        opts.add_argument(a)
    try:
        d = webdriver.Chrome(service=Service(driver_bin), options=opts)
    except Exception as e:  # noqa: BLE001
        print("SKIP serve_page: headless Chromium did not start (%s)" % str(e).splitlines()[0])
        return
    try:
        d.get(url + "/")
        check("page_loads", d.title == "gptkit chat" and d.find_element(By.ID, "input").is_displayed(), d.title)
        import json, urllib.request
        name = json.load(urllib.request.urlopen(url + "/v1/models", timeout=30))["data"][0]["id"]
        check("page_model_name", wait_for(lambda: d.find_element(By.ID, "model").text == name),
              d.find_element(By.ID, "model").text)
        d.find_element(By.ID, "toggle-settings").click()
        for fid, val in (("temperature", "0"), ("max-tokens", "20")):
            el = d.find_element(By.ID, fid)
            el.clear()
            el.send_keys(val)
        d.find_element(By.ID, "system").send_keys("Be brief.")
        d.find_element(By.ID, "toggle-settings").click()
        box = d.find_element(By.ID, "input")
        box.send_keys("line one")
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys("<b>bold?</b>")
        check("page_shift_enter_newline", box.get_attribute("value") == "line one\n<b>bold?</b>" and
              not d.find_elements(By.CSS_SELECTOR, ".msg"), box.get_attribute("value"))
        box.send_keys(Keys.ENTER)
        users = d.find_elements(By.CSS_SELECTOR, ".msg.user")
        check("page_enter_sends", len(users) == 1 and box.get_attribute("value") == "", len(users))
        check("page_user_html_is_text", users and users[0].text == "line one\n<b>bold?</b>" and
              not users[0].find_elements(By.TAG_NAME, "b"), users[0].get_attribute("innerHTML") if users else "")
        # a reply streams in (several updates while it is being generated); Stop ends it
        asst = lambda: d.find_element(By.CSS_SELECTOR, ".msg.assistant:last-child")  # noqa: E731
        streamed = wait_for(lambda: "generating" in asst().get_attribute("class") and len(asst().find_element(By.CSS_SELECTOR, ".body").text) > 0)
        check("page_streams_text", streamed, asst().get_attribute("outerHTML")[:300])
        stop = d.find_element(By.ID, "stop")
        check("page_stop_enabled_while_streaming", stop.is_enabled())
        stop.click()
        check("page_stop_ends_reply", wait_for(lambda: "finished" in asst().get_attribute("class")) and
              d.find_element(By.ID, "send").is_enabled() and not stop.is_enabled(), asst().get_attribute("class"))
        check("page_copy_button", len(asst().find_elements(By.CSS_SELECTOR, "button.copy")) == 1)
        # a second turn, left to finish
        box.send_keys("Who wrote Hamlet?", Keys.ENTER)
        check("page_second_turn", wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant.finished")) == 2),
              len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")))
        # the Markdown renderer builds nodes from text: markup in model text never becomes HTML
        got = d.execute_script(
            "const el = document.createElement('div'); renderMarkdown(el, arguments[0]);"
            "return [el.querySelectorAll('pre code').length, el.querySelectorAll('img, script').length,"
            "        el.querySelectorAll('strong').length, el.querySelectorAll('ul li').length, el.textContent];",
            "**bold** <img src=x onerror=alert(1)><script>alert(2)</script>\n```c\nint x = 1 < 2;\n```\n- a\n- b")
        check("page_markdown_safe", got[:4] == [1, 0, 1, 2] and "<img src=x" in got[4] and "int x = 1 < 2;" in got[4], got)
        d.set_window_size(390, 844)   # a phone
        overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        check("page_phone_width", overflow <= 0 and d.find_element(By.ID, "send").is_displayed(), overflow)
        d.save_screenshot(shot)
        print("  screenshot: " + shot)
        d.find_element(By.ID, "new-chat").click()
        check("page_new_chat", not d.find_elements(By.CSS_SELECTOR, ".msg"))
    finally:
        d.quit()
    sys.exit(1 if FAILED else 0)


main()
