"""Conformance of the simulator with the official `twilio` Python library (9.13.0).

Starts the simulator binary (env SIMULATOR_BIN, default target/debug/voice-agent-simulator) on a
free port, points the official client at it and checks create / fetch / list with paging, error
mapping, voice calls (create / fetch / update, signed call-progress callbacks), WhatsApp sends (24-hour window, Content templates), STOP opt-outs (21610), and that webhook
signatures verify with the library's own RequestValidator.

Run: /work/main/.venv/bin/python -m unittest simulator/tests/python/test_official_client.py
"""

import http.server
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
import uuid

# Must happen before the client makes requests: a set edge/region rewrites 127.0.0.1, and
# proxies would intercept local traffic.
os.environ.pop("TWILIO_EDGE", None)
os.environ.pop("TWILIO_REGION", None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

from twilio.base.exceptions import TwilioRestException  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402
from twilio.rest import Client  # noqa: E402

ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "python-conformance-token"
FROM = "+15005550006"
STARTUP_TIMEOUT_S = 30
WAIT_S = 10
LISTENING_PREFIX = "voice-agent-simulator listening on "

_process = None
_log = None
_base_url = None


def _default_binary():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    return os.path.join(root, "target", "debug", "voice-agent-simulator")


def setUpModule():
    global _process, _log, _base_url
    binary = os.environ.get("SIMULATOR_BIN", _default_binary())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMULATOR_")}
    env.update(
        SIMULATOR_PORT="0",
        SIMULATOR_ACCOUNT_SID=ACCOUNT_SID,
        SIMULATOR_AUTH_TOKEN=AUTH_TOKEN,
        SIMULATOR_CALLBACK_DELAY_MS="5",
        SIMULATOR_CALLS_PER_SECOND="0",
        SIMULATOR_CALL_RING_MS="10",
        SIMULATOR_CALL_SECOND_MS="1",
    )
    _log = tempfile.TemporaryFile(mode="w+")
    _process = subprocess.Popen(
        [binary], stdout=subprocess.PIPE, stderr=_log, env=env, text=True
    )
    lines = queue.Queue()
    threading.Thread(
        target=lambda: lines.put(_process.stdout.readline()), daemon=True
    ).start()
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        line = ""
    if not line.startswith(LISTENING_PREFIX):
        _stop()
        raise RuntimeError(f"simulator did not start: {line!r}\n{_read_log()}")
    _base_url = line[len(LISTENING_PREFIX):].strip()


def tearDownModule():
    _stop()


def _stop():
    if _process is not None and _process.poll() is None:
        _process.terminate()  # SIGTERM to this PID only: graceful shutdown
        try:
            _process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            _process.kill()
            _process.wait()


def _read_log():
    if _log is None:
        return ""
    _log.seek(0)
    return _log.read()


def _client(sid=ACCOUNT_SID, token=AUTH_TOKEN):
    client = Client(sid, token)
    client.api.base_url = _base_url
    return client


def _admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{_base_url}/admin/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def _unique_number():
    # +1 555 01xx-style fictional numbers, unique per test so lists do not interfere.
    return "+1555" + str(uuid.uuid4().int)[:7]


def _wait_for_status(client, sid, status):
    deadline = time.monotonic() + WAIT_S
    while True:
        message = client.messages(sid).fetch()
        if message.status == status or time.monotonic() > deadline:
            return message
        time.sleep(0.01)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records form POSTs (URL as requested, params, signature) into the server's queue."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        host, port = self.server.server_address
        self.server.received.put(
            {
                "url": f"http://{host}:{port}{self.path}",
                "params": params,
                "signature": self.headers.get("X-Twilio-Signature", ""),
                "user_agent": self.headers.get("User-Agent", ""),
            }
        )
        reply = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class _Receiver:
    def __enter__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.server.received = queue.Queue()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address
        self.base = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def next(self):
        return self.server.received.get(timeout=WAIT_S)


class OfficialClientTest(unittest.TestCase):
    def test_create_then_fetch_returns_the_same_message(self):
        client = _client()
        to = _unique_number()

        created = client.messages.create(to=to, from_=FROM, body="Hello from Python")
        fetched = client.messages(created.sid).fetch()

        self.assertRegex(created.sid, r"^SM[0-9a-f]{32}$")
        self.assertEqual(created.status, "queued")
        self.assertEqual(created.to, to)
        self.assertEqual(created.from_, FROM)
        self.assertEqual(created.num_segments, "1")
        self.assertEqual(created.account_sid, ACCOUNT_SID)
        self.assertIsNotNone(created.date_created)  # parsed from RFC 2822 by the library
        self.assertEqual(fetched.sid, created.sid)
        self.assertEqual(fetched.body, "Hello from Python")

    def test_list_filters_by_to_and_follows_pages(self):
        client = _client()
        to = _unique_number()
        sids = [
            client.messages.create(to=to, from_=FROM, body=f"m{i}").sid for i in range(5)
        ]
        client.messages.create(to=_unique_number(), from_=FROM, body="noise")

        first_page = client.messages.page(to=to, page_size=2)
        listed = client.messages.list(to=to, page_size=2)

        self.assertEqual(len(list(first_page)), 2)
        self.assertIsNotNone(first_page.next_page_url)
        self.assertEqual(len(list(first_page.next_page())), 2)
        self.assertEqual([m.sid for m in listed], list(reversed(sids)))
        self.assertTrue(all(m.to == to for m in listed))

    def test_an_invalid_to_raises_21211_with_status_400(self):
        client = _client()

        with self.assertRaises(TwilioRestException) as caught:
            client.messages.create(to="+1asd", from_=FROM, body="x")

        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(caught.exception.code, 21211)
        self.assertIn("Unable to create record", caught.exception.msg)

    def test_bad_credentials_raise_401_with_code_20003(self):
        client = _client(token="wrong-token")

        with self.assertRaises(TwilioRestException) as caught:
            client.messages.create(to=_unique_number(), from_=FROM, body="x")

        self.assertEqual(caught.exception.status, 401)
        self.assertEqual(caught.exception.code, 20003)

    def test_status_callbacks_verify_with_the_official_validator(self):
        client = _client()
        validator = RequestValidator(AUTH_TOKEN)
        with _Receiver() as receiver:
            callback = f"{receiver.base}/status?tenant=a"

            message = client.messages.create(
                to=_unique_number(), from_=FROM, body="hi", status_callback=callback
            )
            sent, delivered = receiver.next(), receiver.next()

        for request, status in ((sent, "sent"), (delivered, "delivered")):
            self.assertEqual(request["url"], callback)
            self.assertEqual(request["params"]["MessageSid"], message.sid)
            self.assertEqual(request["params"]["MessageStatus"], status)
            self.assertEqual(request["user_agent"], "TwilioProxy/1.1")
            self.assertTrue(
                validator.validate(request["url"], request["params"], request["signature"])
            )

    def test_injected_inbound_sms_verifies_and_forgeries_do_not(self):
        validator = RequestValidator(AUTH_TOKEN)
        number = _unique_number()
        with _Receiver() as receiver:
            _admin("PUT", f"numbers/{number}", {"sms_url": f"{receiver.base}/sms"})

            genuine = _admin("POST", "inbound", {"from": "+15558675310", "to": number, "body": "Hi & bye"})
            first = receiver.next()
            _admin("POST", f"inbound/{genuine['message_sid']}/redeliver", {"bad_signature": True})
            forged = receiver.next()

        self.assertEqual(genuine["status"], 200)
        self.assertEqual(first["params"]["Body"], "Hi & bye")
        self.assertEqual(first["params"]["SmsStatus"], "received")
        self.assertTrue(validator.validate(first["url"], first["params"], first["signature"]))
        self.assertEqual(forged["params"], first["params"])
        self.assertFalse(validator.validate(forged["url"], forged["params"], forged["signature"]))

    def test_a_call_is_created_fetched_and_hung_up_with_signed_progress_callbacks(self):
        client = _client()
        validator = RequestValidator(AUTH_TOKEN)
        to = _unique_number()
        # The callee takes a minute to answer, so the call waits in the Gather until hung up.
        _admin("PUT", f"callees/{to}", {"lines": ["hello"], "think_ms": 60000})
        with _Receiver() as receiver:
            callback = f"{receiver.base}/call-status"

            created = client.calls.create(
                to=to,
                from_=FROM,
                twiml='<Response><Gather input="speech"><Say>Hi there</Say></Gather></Response>',
                status_callback=callback,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
            )
            progress = [receiver.next() for _ in range(3)]
            fetched = client.calls(created.sid).fetch()
            updated = client.calls(created.sid).update(status="completed")
            completed = receiver.next()

        self.assertRegex(created.sid, r"^CA[0-9a-f]{32}$")
        self.assertEqual(created.status, "queued")
        self.assertEqual(created.direction, "outbound-api")
        self.assertEqual(created.to, to)
        self.assertEqual(fetched.status, "in-progress")
        self.assertIsNotNone(fetched.start_time)  # parsed from RFC 2822 by the library
        self.assertEqual(updated.status, "completed")
        statuses = [r["params"]["CallStatus"] for r in progress + [completed]]
        self.assertEqual(statuses, ["initiated", "ringing", "in-progress", "completed"])
        self.assertEqual(
            [r["params"]["SequenceNumber"] for r in progress + [completed]], ["0", "1", "2", "3"]
        )
        for request in progress + [completed]:
            self.assertEqual(request["params"]["CallSid"], created.sid)
            self.assertTrue(
                validator.validate(request["url"], request["params"], request["signature"])
            )
        ledger = _admin("GET", f"calls/{created.sid}")
        self.assertEqual([e["kind"] for e in ledger["events"]][:2], ["gather", "say"])

    def test_an_invalid_call_raises_twilio_codes(self):
        client = _client()

        with self.assertRaises(TwilioRestException) as invalid_to:
            client.calls.create(to="+1asd", from_=FROM, url="http://127.0.0.1:9/voice")
        with self.assertRaises(TwilioRestException) as no_url:
            client.calls.create(to=_unique_number(), from_=FROM)
        with self.assertRaises(TwilioRestException) as missing:
            client.calls("CA" + "f" * 32).fetch()

        self.assertEqual((invalid_to.exception.status, invalid_to.exception.code), (400, 21211))
        self.assertEqual((no_url.exception.status, no_url.exception.code), (400, 21205))
        self.assertEqual((missing.exception.status, missing.exception.code), (404, 20404))

    def test_whatsapp_messages_follow_the_session_window(self):
        client = _client()
        validator = RequestValidator(AUTH_TOKEN)
        sender = "whatsapp:" + FROM
        inside, outside = "whatsapp:" + _unique_number(), "whatsapp:" + _unique_number()
        _admin("PUT", "whatsapp/sessions", {"from": inside, "to": sender})
        with _Receiver() as receiver:
            callback = f"{receiver.base}/status"

            replied = client.messages.create(
                to=inside, from_=sender, body="Your order shipped", status_callback=callback
            )
            cold = client.messages.create(
                to=outside, from_=sender, body="Hello stranger", status_callback=callback
            )
            received = [receiver.next() for _ in range(4)]

        by_sid = {}
        for request in received:
            self.assertTrue(
                validator.validate(request["url"], request["params"], request["signature"])
            )
            by_sid.setdefault(request["params"]["MessageSid"], []).append(request["params"])
        self.assertEqual(replied.status, "queued")
        self.assertEqual(replied.to, inside)
        self.assertEqual(replied.from_, sender)
        self.assertEqual(
            [p["MessageStatus"] for p in by_sid[replied.sid]], ["sent", "delivered", "read"]
        )
        self.assertEqual(by_sid[replied.sid][-1]["ChannelPrefix"], "whatsapp")
        self.assertEqual(cold.status, "queued")  # Twilio accepts, then fails asynchronously
        self.assertEqual([p["MessageStatus"] for p in by_sid[cold.sid]], ["failed"])
        self.assertEqual(by_sid[cold.sid][0]["ErrorCode"], "63016")
        failed = _wait_for_status(client, cold.sid, "failed")
        self.assertEqual(failed.error_code, 63016)

    def test_a_content_template_create_is_rendered_and_recorded(self):
        client = _client()
        content_sid = "HX" + uuid.uuid4().hex
        to = "whatsapp:" + _unique_number()
        _admin("PUT", f"content/{content_sid}", {"body": "Hi {{1}}, see you at {{2}}."})

        created = client.messages.create(
            to=to,
            from_="whatsapp:" + FROM,
            content_sid=content_sid,
            content_variables=json.dumps({"1": "Ana", "2": "3pm"}),
        )
        ledger = _admin("GET", "ledger?to=" + urllib.parse.quote(to))

        self.assertEqual(created.body, "Hi Ana, see you at 3pm.")
        entry = ledger["messages"][0]
        self.assertEqual(entry["content_sid"], content_sid)
        self.assertEqual(json.loads(entry["content_variables"]), {"1": "Ana", "2": "3pm"})
        with self.assertRaises(TwilioRestException) as caught:
            client.messages.create(
                to=to, from_="whatsapp:" + FROM, content_sid=content_sid, content_variables="[1"
            )
        self.assertEqual(caught.exception.code, 21656)

    def test_a_user_who_texted_stop_raises_21610(self):
        client = _client()
        user, number = _unique_number(), _unique_number()
        with _Receiver() as receiver:
            _admin("PUT", f"numbers/{number}", {"sms_url": f"{receiver.base}/sms"})
            _admin("POST", "inbound", {"from": user, "to": number, "body": "STOP"})
            receiver.next()

        with self.assertRaises(TwilioRestException) as caught:
            client.messages.create(to=user, from_=number, body="Come back!")

        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(caught.exception.code, 21610)


if __name__ == "__main__":
    unittest.main(verbosity=2)
