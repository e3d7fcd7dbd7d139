#!/usr/bin/env python3
"""The mail viewer page (GET / of sendgrid-fake-server) in a real browser, headless Chromium.

Starts a webhook receiver (tests/support/webhook_receiver.cpp, the library's EventWebhook) and
sendgrid-fake-server pointed at it, sends mail to the fake server as any client would, then
drives the page: finds a message by searching for its recipient, opens it, presses "bounce" for
one recipient, and waits until the receiver has verified the signed bounce event. Checks on the
way that a script in the mail's HTML body does not run, that mail data is shown as text, that
the API key is not shown, and that the page says how many messages --max-messages dropped.
Saves a screenshot of the list and the opened message as mail_viewer.png in --out-dir.

Needs Debian's chromium, chromium-driver and python3-selenium (./setup.sh test installs them);
without them the test fails and says so, it never skips.
"""
import argparse
import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KEY = "SG.browser-test-key"
SETUP_HINT = "run ./setup.sh test, which installs chromium chromium-driver python3-selenium"
NOT_RUN = "script did not run"

# The mail's HTML body: each line of the script, if it ran, leaves a trace the test looks for.
HOSTILE_HTML = (
    "<h1 id='marker'>" + NOT_RUN + "</h1><p>Your order <b>1001</b> has shipped.</p>"
    "<script>"
    "document.getElementById('marker').textContent = 'script ran';"
    "top.postMessage('script ran', '*');"
    "try { localStorage.setItem('mail_script', 'ran'); } catch (e) {}"
    "try { top.document.title = 'script ran'; } catch (e) {}"
    "</script>"
    "<img src='data:,' onerror=\"top.postMessage('onerror ran', '*')\">"
    "<svg onload=\"top.postMessage('onload ran', '*')\"></svg>")
SUBJECT = "Order 1001 <b>shipped</b> <img src=x onerror=alert(1)>"


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def require_browser():
    """Fails (never skips) when the browser or its driver is missing."""
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("python3-selenium (for " + sys.executable + ")")
    if missing:
        raise TestFailure("missing " + ", ".join(missing) + ": " + SETUP_HINT)


def start(command, log_path):
    """Starts a program that prints its URL alone on its first line of stdout."""
    log = open(log_path, "w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        process.wait()
        log.close()
        raise TestFailure(" ".join(command) + " printed no URL; its stderr:\n" +
                          open(log_path).read())
    return process, url


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post_mail(url, payload):
    request = urllib.request.Request(
        url + "/v3/mail/send", data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            check(answer.status == 202, "mail/send answered %d" % answer.status)
            return answer.headers["X-Message-Id"]
    except urllib.error.HTTPError as error:
        raise TestFailure("mail/send answered %d: %s" % (error.code, error.read()[:500]))


def mail(to, subject, **extra):
    payload = {"personalizations": [{"to": [{"email": address} for address in to]}],
               "from": {"email": "shop@example.com"}, "subject": subject,
               "content": [{"type": "text/plain", "value": "Plain text of " + subject}]}
    payload.update(extra)
    return payload


def check_page_policy(url):
    """GET / is one self-contained page that never parses strings as HTML, served with a
    Content-Security-Policy that lets its own script run (by hash) and nothing else."""
    with urllib.request.urlopen(url + "/", timeout=5) as answer:
        page = answer.read().decode()
        policy = answer.headers.get("Content-Security-Policy")
        check(answer.headers.get_content_type() == "text/html",
              "GET / is " + str(answer.headers.get("Content-Type")))
    check(policy, "GET / has no Content-Security-Policy header: send "
          "testing::detail::mail_viewer_content_security_policy() with the page")
    check(not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page),
          "the page loads something from the network")
    check(not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", page),
          "the page parses strings as HTML (mail data must go in as text)")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    check(len(scripts) == 1, "the page should have exactly one inline script")
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    check("'sha256-" + digest + "'" in policy,
          "the page's script changed: in mail_viewer_content_security_policy() put "
          "'sha256-" + digest + "' (the policy served: " + policy + ")")


def wait_for(what, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(0.05)


def received_events(events_path):
    if not os.path.exists(events_path):
        return []
    with open(events_path) as file:
        lines = [json.loads(line) for line in file if line.strip()]
    refused = [line["refused"] for line in lines if "refused" in line]
    check(not refused, "the receiver refused a webhook request: " + "; ".join(refused))
    return lines


def browser(work):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    # --no-sandbox turns off Chromium's process sandbox (it cannot start as root without it);
    # the iframe's sandbox attribute, which this test is about, is enforced by Blink regardless.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--user-data-dir=" + work + "/profile"):
        options.add_argument(argument)
    # The driver's path given: Selenium would otherwise look for one on the network.
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def drive_page(driver, url, message_id, events_path, out_dir):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(what, condition, timeout=10):
        # The page re-renders what changed, so an element found may be gone when it is read.
        try:
            return WebDriverWait(driver, timeout, poll_frequency=0.05,
                                 ignored_exceptions=[StaleElementReferenceException]).until(
                                     condition)
        except TimeoutException:
            raise TestFailure("page: timed out waiting for " + what + "; status line: %r, "
                              "search box: %r, messages listed: %r" % (
                                  driver.find_element(By.ID, "status").text,
                                  driver.find_element(By.ID, "search").get_attribute("value"),
                                  listed()))

    def listed():  # read in one step: the list may be re-rendered at any time
        return driver.execute_script(
            "return Array.from(document.querySelectorAll('#list li[data-message-id]'),"
            " item => item.dataset.messageId)")

    driver.get(url + "/")
    title = driver.title
    wait("the list of messages", lambda d: len(listed()) == 3)
    notice = driver.find_element(By.ID, "notice").text
    check("1 older message was dropped" in notice and "newest 3" in notice,
          "the page does not say what --max-messages dropped: " + repr(notice))
    # Anything the mail's frame posts to the page is a sign its script ran.
    driver.execute_script(
        "window.fromMail = []; addEventListener('message', e => fromMail.push(String(e.data)));")

    driver.find_element(By.ID, "search").send_keys("ann@example")
    wait("the search to leave one message", lambda d: listed() == [message_id])
    driver.find_element(By.CSS_SELECTOR, "#list li[data-message-id='%s']" % message_id).click()
    bounce = "#recipients tr[data-email='ann@example.com'] button[data-event='bounce']"
    wait("the message view", lambda d: d.find_elements(By.CSS_SELECTOR, bounce))
    subject = driver.find_element(By.ID, "subject").text
    check(subject == SUBJECT, "the subject is not shown as text: " + repr(subject))

    frame = driver.find_element(By.CSS_SELECTOR, "#tabs iframe")
    check(frame.get_attribute("sandbox") == "", "the HTML body's iframe sandbox is " +
          repr(frame.get_attribute("sandbox")) + ", not empty (no allow-scripts)")
    driver.switch_to.frame(frame)
    marker = wait("the HTML body in its frame", lambda d: d.find_elements(By.ID, "marker"))
    check(marker[0].text == NOT_RUN, "the mail's script ran: the marker says " +
          repr(marker[0].text))
    driver.switch_to.default_content()

    driver.find_element(By.CSS_SELECTOR, bounce).click()
    event = wait_for("the receiver to verify the signed bounce event", lambda: next(
        (event for event in received_events(events_path)
         if event.get("event") == "bounce" and event.get("email") == "ann@example.com"), None))
    check(str(event.get("sg_message_id", "")).startswith(message_id),
          "the bounce's sg_message_id %r is not of message %s" % (event.get("sg_message_id"),
                                                                    message_id))
    wait("the bounce in the timeline", lambda d: any(
        "bounce" in row.text for row in d.find_elements(By.CSS_SELECTOR, "#events tr.event")))
    wait("ann@example.com's status to be bounce", lambda d: d.find_element(
        By.CSS_SELECTOR, "#recipients tr[data-email='ann@example.com'] .badge").text == "bounce")

    driver.find_element(By.CSS_SELECTOR, "button[data-tab='Request']").click()
    request_json = wait("the request tab", lambda d: d.find_elements(By.ID, "request-json"))
    check("Bearer ***" in request_json[0].text and KEY not in driver.page_source,
          "the request view shows the API key")
    driver.find_element(By.CSS_SELECTOR, "button[data-tab='Attachments']").click()
    link = wait("the attachments tab",
                lambda d: d.find_elements(By.CSS_SELECTOR, "#attachments a"))[0]
    with urllib.request.urlopen(link.get_attribute("href"), timeout=5) as answer:
        check(answer.read() == b"hello, attachment", "the attachment link gives other bytes")
    driver.find_element(By.CSS_SELECTOR, "button[data-tab='HTML']").click()

    # The mail's script had every chance to run by now (the frame loaded before the bounce).
    from_mail = driver.execute_script("return window.fromMail")
    check(from_mail == [], "the mail's frame posted to the page: " + repr(from_mail))
    check(driver.title == title, "the page's title changed to " + repr(driver.title))
    check(driver.execute_script("return localStorage.getItem('mail_script')") is None,
          "the mail's script wrote to localStorage")

    driver.find_element(By.ID, "search").clear()
    driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    wait("the whole list again", lambda d: len(listed()) == 3)
    screenshot = os.path.join(out_dir, "mail_viewer.png")
    check(driver.save_screenshot(screenshot), "could not write " + screenshot)
    return screenshot


def run(arguments, work):
    require_browser()
    key_file = os.path.join(work, "webhook_key")
    events_path = os.path.join(work, "events.jsonl")
    processes = []
    try:
        receiver, receiver_url = start([arguments.receiver, key_file, events_path],
                                       os.path.join(work, "receiver.log"))
        processes.append(receiver)
        server, url = start([arguments.fake_server, "--api-key", KEY, "--max-messages", "3",
                             "--webhook", receiver_url, "--webhook-key-out", key_file],
                            os.path.join(work, "fake_server.log"))
        processes.append(server)
        check_page_policy(url)

        post_mail(url, mail(["old@example.com"], "Dropped by --max-messages"))
        message_id = post_mail(url, mail(
            ["ann@example.com", "bob@example.com"], SUBJECT, categories=["orders"],
            content=[{"type": "text/plain", "value": "Your order 1001 has shipped."},
                     {"type": "text/html", "value": HOSTILE_HTML}],
            attachments=[{"content": base64.b64encode(b"hello, attachment").decode(),
                          "filename": "receipt.txt", "type": "text/plain"}]))
        post_mail(url, mail(["cat@example.com"], "Welcome", categories=["signup"]))
        post_mail(url, mail(["dan@example.com"], "Password reset"))

        driver = browser(work)
        try:
            screenshot = drive_page(driver, url, message_id, events_path, arguments.out_dir)
        finally:
            driver.quit()
    except Exception:
        for name in ("fake_server.log", "receiver.log"):
            path = os.path.join(work, name)
            if os.path.exists(path):
                sys.stderr.write("--- " + name + "\n" + open(path).read()[-4000:])
        raise
    finally:
        for process in reversed(processes):
            stop(process)
    log = open(os.path.join(work, "fake_server.log")).read()
    check(KEY not in log, "the fake server logged the API key")
    print("mail viewer: searched, opened, bounced; the receiver verified the signed bounce; "
          "the mail's script did not run; screenshot " + screenshot)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-server", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--out-dir", required=True)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sendgrid-browser-") as work:
        try:
            run(arguments, work)
        except TestFailure as failure:
            print("FAILED: " + str(failure), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
