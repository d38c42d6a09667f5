"""Drives the web console in Debian's headless Chromium through Selenium, as a person would,
and prints what it saw as one JSON object for the Rust test to check (tests/local/console.rs).

usage: console_browser.py BASE_URL API_KEY SCREENSHOT_DIR SCENARIO_JSON

The scenario names the group to send to and the texts to use. Every step waits for what a
person would wait for (the counts reaching `completed`, say); a step that times out raises,
and the traceback says which.
"""

import json
import os
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("SE_OFFLINE", "true")  # no Selenium Manager download: the system driver

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

base, key, shots, scenario = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
os.makedirs(shots, exist_ok=True)
seen = {}

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("NOTIFY_TEST_CHROMIUM", "/usr/bin/chromium")
for flag in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1000",
    f"--user-data-dir={tempfile.mkdtemp(prefix='console-chromium-')}",
]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(
    options=options,
    service=Service(os.environ.get("NOTIFY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")),
)
# The pages refresh themselves: an element found may be replaced before it is read, which is
# no failure, only a reason to look again.
LIVE = [StaleElementReferenceException]
wait = WebDriverWait(driver, 20, ignored_exceptions=LIVE)


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def text_of(css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def send(to_kind, to, channels, **fields):
    driver.get(f"{base}/console#/send")
    wait.until(ec.presence_of_element_located((By.ID, "send")))
    Select(driver.find_element(By.ID, "to-kind")).select_by_value(to_kind)
    driver.find_element(By.ID, "to").send_keys(to)
    for channel in ["email", "sms", "in_app", "push"]:
        box = driver.find_element(By.ID, f"channel-{channel}")
        if box.is_selected() != (channel in channels):
            box.click()
    for field, value in fields.items():
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#send button[type=submit]").click()
    # The console goes to the new notification's page.
    wait.until(lambda d: "#/notifications/ntf_" in d.current_url)
    return driver.current_url.rsplit("/", 1)[-1]


try:
    # A wrong key is refused, and the page says so.
    driver.get(f"{base}/console")
    wait.until(ec.presence_of_element_located((By.ID, "api-key")))
    seen["sign_in_label"] = driver.find_element(By.CSS_SELECTOR, "label[for=api-key]").text
    driver.find_element(By.ID, "api-key").send_keys("not-the-key")
    driver.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait.until(lambda d: "refused" in d.find_element(By.ID, "status").text)
    seen["wrong_key_status"] = text_of("#status")
    shot("sign-in")

    # Sign in with the keyboard only: type the key, press Enter.
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key + "\n")
    wait.until(ec.visibility_of_element_located((By.ID, "nav")))
    wait.until(lambda d: d.execute_script("return location.hash") == "#/notifications")
    seen["key_in_url"] = key in driver.current_url
    seen["key_in_session_storage"] = driver.execute_script(
        "return sessionStorage.getItem('notify.apiKey')") == key
    seen["key_in_local_storage"] = driver.execute_script(
        "return Object.keys(localStorage).length") != 0
    seen["outbox_link_visible"] = driver.find_element(By.ID, "nav-outbox").is_displayed()

    # A reserved send, made by the test an hour ahead: its page, left open, follows it
    # from `scheduled` to `completed` without a reload.
    driver.get(f"{base}/console#/notifications/{scenario['reserved']}")
    wait.until(ec.presence_of_element_located((By.ID, "notification-status")))
    seen["reserved_first_status"] = text_of("#notification-status")
    # Due now: the API moves it, not the page, which must follow on its own.
    due = urllib.request.Request(
        f"{base}/v1/notifications/{scenario['reserved']}",
        method="PATCH",
        data=json.dumps({"send_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(due) as answer:
        assert answer.status == 200, answer.status
    reserved_statuses = []

    def reserved_done(d):
        status = d.find_element(By.ID, "notification-status").text
        if not reserved_statuses or reserved_statuses[-1] != status:
            reserved_statuses.append(status)
        return status == "completed"

    WebDriverWait(driver, 30, poll_frequency=0.1, ignored_exceptions=LIVE).until(reserved_done)
    seen["reserved_statuses"] = reserved_statuses
    seen["reserved_counts"] = {
        cell.get_attribute("data-count"): int(cell.text)
        for cell in driver.find_elements(By.CSS_SELECTOR, "#counts td")
    }
    seen["reserved_url_unchanged"] = driver.current_url.endswith(scenario["reserved"])

    # Send to the group from the console; watch the counts reach `completed`.
    ntf = send("group_id", scenario["group"], ["email"],
               subject=scenario["subject"], text=scenario["text"], html=scenario["html"])
    seen["sent_id"] = ntf
    observed_statuses = set()

    def completed(d):
        status = d.find_element(By.ID, "notification-status").text
        observed_statuses.add(status)
        return status == "completed"

    WebDriverWait(driver, 30, poll_frequency=0.05, ignored_exceptions=LIVE).until(completed)
    seen["statuses_seen"] = sorted(observed_statuses)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main table:nth-of-type(2) tbody tr")) > 0)
    seen["counts"] = {
        cell.get_attribute("data-count"): int(cell.text)
        for cell in driver.find_elements(By.CSS_SELECTOR, "#counts td")
    }
    seen["summary_text"] = text_of("#summary")
    shot("notification")

    # The filters ask the server: `failed` shows none, `sent` shows every member.
    rows = lambda d: d.find_elements(By.CSS_SELECTOR, "#main table:nth-of-type(2) tbody tr")
    Select(driver.find_element(By.ID, "filter-status")).select_by_value("failed")
    wait.until(lambda d: len(rows(d)) == 0)
    seen["failed_rows"] = len(rows(driver))
    Select(driver.find_element(By.ID, "filter-status")).select_by_value("sent")
    wait.until(lambda d: len(rows(d)) > 0)
    seen["sent_rows"] = len(rows(driver))

    # Open one member's email: the HTML part rendered in its frame, the text part as text.
    rows(driver)[0].find_element(By.LINK_TEXT, "Message").click()
    wait.until(ec.presence_of_element_located((By.ID, "email-subject")))
    seen["message_subject"] = text_of("#email-subject")
    seen["message_text"] = text_of("#email-text")
    frame = driver.find_element(By.CSS_SELECTOR, "iframe.email")
    seen["frame_sandbox"] = frame.get_attribute("sandbox")
    driver.switch_to.frame(frame)
    seen["frame_text"] = driver.find_element(By.TAG_NAME, "body").text
    driver.switch_to.default_content()
    shot("message")

    # A hostile email: its scripts and handlers try to reach the console and its key.
    hostile = send("email", scenario["hostile_to"], ["email"], subject=scenario["hostile_subject"],
                   text="hostile", html=scenario["hostile_html"])
    seen["hostile_id"] = hostile
    WebDriverWait(driver, 30, ignored_exceptions=LIVE).until(lambda d: d.find_element(By.ID, "notification-status").text == "completed")
    rows(driver)[0].find_element(By.LINK_TEXT, "Message").click()
    wait.until(ec.presence_of_element_located((By.ID, "email-subject")))
    frame = driver.find_element(By.CSS_SELECTOR, "iframe.email")
    driver.switch_to.frame(frame)
    WebDriverWait(driver, 10, ignored_exceptions=LIVE).until(lambda d: "Hostile" in d.find_element(By.TAG_NAME, "body").text)
    time.sleep(1.0)  # the frame has loaded; its handlers would have run by now
    seen["hostile_frame_marker"] = driver.find_element(By.TAG_NAME, "body").get_attribute("data-ran")
    driver.switch_to.default_content()
    seen["hostile_subject_shown"] = text_of("#email-subject")
    seen["console_title"] = driver.title
    seen["console_marker"] = driver.execute_script(
        "return document.body.getAttribute('data-pwned') || window.pwned || null")
    seen["console_images"] = len(driver.find_elements(By.CSS_SELECTOR, "#main img"))
    shot("hostile-message")

    # The outbox, as Mailpit would show it: the member's email is listed and opens.
    driver.get(f"{base}/console#/outbox")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main table tbody tr a")) > 0)
    seen["outbox_subjects"] = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#main table tbody tr a")]
    shot("outbox")
    driver.find_element(By.LINK_TEXT, scenario["subject"]).click()
    wait.until(ec.presence_of_element_located((By.ID, "email-text")))
    seen["outbox_email_text"] = text_of("#email-text")

    # Groups and suppressions show what the API holds.
    driver.get(f"{base}/console#/groups")
    wait.until(lambda d: len(d.find_elements(By.LINK_TEXT, scenario["group"])) > 0)
    driver.find_element(By.LINK_TEXT, scenario["group"]).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main table tbody tr")) > 0)
    seen["group_members"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#main table tbody td")]
    shot("group")
    driver.get(f"{base}/console#/suppressions")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main table tbody tr td")) > 0)
    seen["suppressions"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#main table tbody td:first-child")]
    shot("suppressions")

    # Keyboard: a new page puts the focus on its content; Tab walks its links, Enter opens one.
    driver.get(f"{base}/console#/notifications")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#main table tbody a")))
    shot("notifications")
    seen["focused_after_load"] = driver.switch_to.active_element.get_attribute("id")
    tabbed = []
    for _ in range(5):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        tabbed.append(driver.switch_to.active_element.text)
        if tabbed[-1] == ntf:
            break
    seen["tab_order"] = tabbed
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "notification-status")))
    seen["opened_by_keyboard"] = driver.execute_script("return location.hash")

    # Signing out forgets the key.
    driver.find_element(By.ID, "sign-out").click()
    wait.until(ec.presence_of_element_located((By.ID, "api-key")))
    seen["key_after_sign_out"] = driver.execute_script("return sessionStorage.getItem('notify.apiKey')")
    seen["browser_log"] = [entry["message"] for entry in driver.get_log("browser")]
finally:
    try:
        shot("last")
    finally:
        driver.quit()

print(json.dumps(seen))
