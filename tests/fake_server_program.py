#!/usr/bin/env python3
"""The sendgrid-fake-server program, as a client in another language sees it.

Starts the program with a fault for one recipient, reads its URL from the first line of stdout,
posts v3 mail/send requests the way SendGrid's official Python client does (same headers),
checks the answers and GET /__requests, then stops it with SIGTERM and checks the exit status.
Standard library only.
"""
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

KEY = "SG.python-client-key"


def post(url, payload, key=KEY):
    request = urllib.request.Request(
        url + "/v3/mail/send", data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json",
                 "User-Agent": "sendgrid/6.11.0;python", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def mail(to):
    return {"personalizations": [{"to": [{"email": to}]}],
            "from": {"email": "shop@example.com"}, "subject": "Hi " + to,
            "content": [{"type": "text/plain", "value": "Hello"}]}


def main(binary):
    program = subprocess.Popen(
        [binary, "--api-key", KEY, "--fault", "400,to=bounce@example.com"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = program.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        status, headers, _ = post(url, mail("jane@example.com"))
        assert status == 202, status
        message_id = headers.get("X-Message-Id")
        assert message_id, headers
        status, _, body = post(url, mail("bounce@example.com"))
        assert status == 400, status
        assert json.loads(body)["errors"][0]["message"], body
        status, _, _ = post(url, mail("jane@example.com"), key="SG.wrong")
        assert status == 401, status
        status, _, body = post(url, {"from": {"email": "shop@example.com"}})
        assert status == 400 and b"personalizations" in body, body

        with urllib.request.urlopen(url + "/__requests", timeout=5) as answer:
            received = json.loads(answer.read())
        assert [r["status"] for r in received] == [202, 400, 401, 400], received
        assert received[0]["message_id"] == message_id
        assert received[0]["payload"]["subject"] == "Hi jane@example.com"
        assert all(r["headers"].get("Authorization") == "[hidden]" for r in received), received
        assert KEY not in json.dumps(received)
    finally:
        program.send_signal(signal.SIGTERM)
        _, log = program.communicate(timeout=10)
    assert program.returncode == 0, (program.returncode, log)
    assert "POST /v3/mail/send 202 'Hi jane@example.com' to jane@example.com" in log, log
    assert "stopping (SIGTERM)" in log, log
    assert KEY not in log
    print("sendgrid-fake-server: 4 requests answered as expected; stopped cleanly")


if __name__ == "__main__":
    main(sys.argv[1])
