"""No secret reaches the server's output: a full run at debug (and at trace) level (auth and reports in both dialects,
protocol errors, an internal error's traceback, management API calls with good and bad keys, sinks with
credentials that keep failing), then grep the log for every secret, token, signature and key it saw.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.hostile.common import aliyun_auth_doc, hw_auth_doc, hw_post
from tests.support import ServerProcess, cli, wait_until
from thingport.core.errors import TokenInvalid
from thingport.core.tokens import TokenCodec
from thingport.store.keys import KeyRing

DEVICE_SECRET = "Ksecret-dev-4f1e9c2b7a6d5e3f8091a2b3"
HW_SECRET = "Hsecret-node-0b9a8c7d6e5f4a3b2c1d0e9f"
WEBHOOK_SECRET = "whsec-9c8b7a6f5e4d3c2b1a09f8e7"
URL_PASSWORD = "urlpass-5a4b3c2d1e0f"
MQTT_PASSWORD = "mqttpass-1f2e3d4c5b6a"
BAD_API_KEY = "tpk_not-a-real-key-but-secret-looking-0123456789"


def _api(server: ServerProcess, method: str, path: str, key: str, body: object | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.api_port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("level", ["debug", "trace"])  # trace: uvicorn's per-connection and ASGI messages too
def test_no_secret_or_token_appears_in_a_debug_log(tmp_path: Path, level: str) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, {"THINGPORT_LOG_LEVEL": level}).start()
    seen: dict[str, str] = {
        "device secret": DEVICE_SECRET,
        "iotda secret": HW_SECRET,
        "webhook secret": WEBHOOK_SECRET,
        "sink url password": URL_PASSWORD,
        "mqtt password": MQTT_PASSWORD,
        "bad api key": BAD_API_KEY,
    }
    try:
        product = cli(data, "product", "create", "--name", "logs")
        pk = product["productKey"]
        dev = cli(data, "device", "create", "--product-key", pk, "--name", "dev-log1", "--secret", DEVICE_SECRET)
        hw = cli(data, "device", "create", "--product-key", pk, "--device-id", f"{pk}_node-log2", "--secret", HW_SECRET)
        api_key = cli(data, "apikey", "create", "--name", "logs", "--role", "admin")["key"]
        seen["api key"] = api_key
        # sinks whose credentials are in their options; both destinations refuse connections, so the
        # forwarder keeps failing (and logging) while the test runs
        cli(data, "subscription", "create", "--name", "hook", "--product-key", pk, "--sink", "webhook", "--no-check",
            "--option", f"url=http://user:{URL_PASSWORD}@127.0.0.1:9/hook", "--option", f"secret={WEBHOOK_SECRET}")
        cli(data, "subscription", "create", "--name", "mq", "--product-key", pk, "--sink", "mqtt", "--no-check",
            "--option", "host=127.0.0.1", "--option", "port=9", "--option", "username=u",
            "--option", f"password={MQTT_PASSWORD}")

        client = server.client()
        # Alibaba: good auth (every sign method), reports, and errors that echo parts of the request
        for method in ("hmacmd5", "hmacsha1", "hmacsha256"):
            doc = aliyun_auth_doc(dev, method=method)
            seen[f"{method} sign"] = doc["sign"]
            reply = client.post_json("/auth", doc).json
            seen[f"aliyun token ({method})"] = reply["info"]["token"]
        token = reply["info"]["token"]
        topic = f"/{pk}/{dev['deviceName']}/user/update"
        assert client.publish(topic, b"hello", token).json["code"] == 0
        assert client.publish(f"/sys/{pk}/{dev['deviceName']}/thing/event/property/post",
                              b'{"id":"1","params":{"t":1}}', token).json["code"] == 0
        assert client.publish(f"/{pk}/other-dev/user/x", b"x", token).json["code"] == 30001
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        seen["tampered token"] = tampered
        assert client.publish(topic, b"x", tampered).json["code"] == 20003
        bad = {**aliyun_auth_doc(dev), "sign": "f" * 64}
        assert client.post_json("/auth", bad).json["code"] == 20000
        client.request("POST", "/auth", b'{"productKey":"\xff"}', {"Content-Type": "application/json"})  # a traceback

        # IoTDA: auth, reports, errors, an internal error (traceback) with the token in the request
        doc = hw_auth_doc(hw)
        seen["iotda password"] = doc["password"]
        hw_token = client.post_json("/v5/device-auth", doc).json["access_token"]
        seen["iotda token"] = hw_token
        body = b'{"services":[{"service_id":"s","properties":{"t":1}}]}'
        assert hw_post(client, hw["deviceId"], "properties/report", body, hw_token).status == 200
        assert hw_post(client, dev["deviceId"], "messages/up", b"x", hw_token).status == 403
        hw_post(client, hw["deviceId"], "properties/report", b"[" * 1500, hw_token)
        wrong = {**hw_auth_doc(hw), "password": "0" * 64}
        assert client.post_json("/v5/device-auth", wrong).status == 401

        # management API: the secret endpoint, a bad key, a read
        assert _api(server, "GET", f"/api/devices/{pk}/{dev['deviceName']}/secret", api_key) == 200
        assert _api(server, "GET", "/api/devices", BAD_API_KEY) == 401
        assert _api(server, "GET", "/api/devices", api_key) == 200
        # a master-key rotation while serving: the old token still works, a new one is signed with the new key
        cli(data, "keys", "rotate")
        new_key = TokenCodec(KeyRing(data).token_keys[0])

        def token_after_rotation() -> str:
            issued = seen[f"token after rotation {len(seen)}"] = client.token(pk, dev["deviceName"], DEVICE_SECRET)
            return issued

        wait_until(token_after_rotation, "the server reloading the key ring (a token signed with the new key)",
                   5.0, 0.2, accept=lambda issued: _verifies(new_key, issued))
        assert client.publish(topic, b"after rotation", token).json["code"] == 0
        client.close()
        wait_until(server.output, "two forwarding retries logged for each dead sink", 10.0, 0.1,
                   accept=lambda output: all(output.count(f"subscription {name}: sink did not confirm") >= 2
                                             for name in ("hook", "mq")))
    finally:
        server.stop()

    for i, line in enumerate((data / "master.key").read_text().split()):
        seen[f"master key {i}"] = line
        seen[f"master key {i} (hex)"] = base64.b64decode(line).hex()
    output = server.output()
    assert level.upper() in output, f"the server did not log at {level} level"
    if level == "trace":
        assert "ASGI [" in output, "uvicorn's ASGI message log is missing: the test proves less than it says"
    assert "hook" in output or "webhook" in output, (
        "the failing sinks were not logged: the test proves less than it says"
    )
    tokens = {k: v for k, v in seen.items() if "token" in k}
    for name, value in list(tokens.items()):  # the same token, base64-decoded, as hex and standard base64
        raw = base64.urlsafe_b64decode(value + "==")
        seen[f"{name} (hex)"] = raw.hex()
        seen[f"{name} (base64)"] = base64.b64encode(raw).decode().rstrip("=")
    leaks = [name for name, value in seen.items() if value and value in output]
    assert not leaks, f"found in the server log: {leaks}"


def _verifies(codec: TokenCodec, token: str) -> bool:
    try:
        codec.verify(token, time.time())
    except TokenInvalid:
        return False
    return True


# --- every sink and store with credentials in its URL, at every log level ---------------------------------

PG_PASSWORD = "pgpass-7e6d5c4b3a29"
PG_QUERY_SECRET = "pgappname-0a9b8c7d6e"
REDIS_PASSWORD = "redispass-3c2b1a0f9e8d"
HOOK_PASSWORD = "hookpass-Passw0rd-b7a6"
HOOK_TOKEN = "hooktoken-e5d4c3b2a1f0"
RABBIT_PASSWORD = "rabbitpass-9f8e7d6c5b4a"
NATS_PASSWORD = "natspass-4d3c2b1a0e9f"
QUERY_SECRET = "querysign-6b5a4f3e2d1c"


class _Receiver:
    """A webhook receiver on 127.0.0.1: ``/in`` confirms every batch; ``/fail`` answers 500 with a body
    that echoes the request target, query string and all (as careless receivers do)."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(self.path)
                body = b"" if self.path.startswith("/in") else f"no route for {self.path}".encode()
                self.send_response(200 if self.path.startswith("/in") else 500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _backlogs(data: Path) -> dict[str, int]:
    return {s["name"]: s["backlog"] for s in cli(data, "subscription", "list")}


@pytest.mark.parametrize("level", ["trace", "debug", "info", "warning"])
def test_no_sink_or_store_credential_appears_in_the_log_at_any_level(tmp_path: Path, level: str) -> None:
    """Each sink (webhook, MQTT, NATS, RabbitMQ), PostgreSQL (with alembic's upgrade) and Redis get
    credentials in their URLs; the working ones forward, the failing ones keep failing, and the whole log
    is then searched for every secret configured. Levels below warning log a superset of what these do."""
    import uuid

    from tests.bus.services import require_service
    from tests.postgres import fresh_database

    for name, port in (("RabbitMQ", 5672), ("Mosquitto", 1883), ("NATS", 4222), ("Redis", 6379)):
        require_service(name, "127.0.0.1", port)
    plain_url = fresh_database(migrate=False)
    assert "postgres@" in plain_url
    database_url = plain_url.replace("postgres@", f"postgres:{PG_PASSWORD}@") + f"?application_name={PG_QUERY_SECRET}"
    data = tmp_path / "data"
    receiver = _Receiver()
    server = ServerProcess(data, {"THINGPORT_LOG_LEVEL": level,
                                  "THINGPORT_REDIS_URL": f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379/13"},
                           args=("--db-upgrade",), database_url=database_url).start()
    seen = {"postgres password": PG_PASSWORD, "postgres query": PG_QUERY_SECRET, "redis password": REDIS_PASSWORD,
            "webhook url password": HOOK_PASSWORD, "webhook url token": HOOK_TOKEN, "webhook secret": WEBHOOK_SECRET,
            "mqtt password": MQTT_PASSWORD, "nats password": NATS_PASSWORD, "rabbitmq password": RABBIT_PASSWORD,
            "device secret": DEVICE_SECRET, "query secret": QUERY_SECRET, "bad api key": BAD_API_KEY}
    try:
        pk = cli(data, "product", "create", "--name", "sinks")["productKey"]
        dev = cli(data, "device", "create", "--product-key", pk, "--name", "dev-sinks", "--secret", DEVICE_SECRET)
        api_key = cli(data, "apikey", "create", "--name", "logs", "--role", "admin")["key"]
        seen["api key"] = api_key
        tag = uuid.uuid4().hex[:8]
        hook = f"http://ops:{HOOK_PASSWORD}@127.0.0.1:{receiver.port}"
        sinks = {
            "hook-ok": ("webhook", [f"url={hook}/in?api_token={HOOK_TOKEN}", f"secret={WEBHOOK_SECRET}"]),
            "hook-500": ("webhook", [f"url={hook}/fail?api_token={HOOK_TOKEN}", f"secret={WEBHOOK_SECRET}"]),
            "mqtt-ok": ("mqtt", ["host=127.0.0.1", "port=1883", "username=tp", f"password={MQTT_PASSWORD}",
                                 f"topic_prefix=tplog{tag}"]),
            "nats-ok": ("nats", [f"url=nats://tp:{NATS_PASSWORD}@127.0.0.1:4222", f"stream=TPLOG{tag}",
                                 f"subject_prefix=tplog{tag}"]),
            "rabbit-refused": ("rabbitmq", [f"url=amqp://guest:{RABBIT_PASSWORD}@127.0.0.1:5672/"]),
        }
        for name, (sink, options) in sinks.items():
            cli(data, "subscription", "create", "--name", name, "--product-key", pk, "--sink", sink, "--no-check",
                *(arg for option in options for arg in ("--option", option)))

        client = server.client()
        token = client.token(pk, dev["deviceName"], DEVICE_SECRET)
        seen["device token"] = token
        topic = f"/sys/{pk}/{dev['deviceName']}/thing/event/property/post"
        deadline = time.monotonic() + 20
        backlogs: dict[str, int] = {}
        for i in range(200):  # report until every working sink has forwarded, one batch after another
            assert client.publish(topic, b'{"id":"%d","params":{"t":%d}}' % (i, i), token).json["code"] == 0
            time.sleep(0.2)
            backlogs = _backlogs(data)
            batches = len([p for p in receiver.received if p.startswith("/in")])  # several batches, several lines
            if batches >= 3 and not any(backlogs[n] for n in ("hook-ok", "mqtt-ok", "nats-ok")):
                break
            assert time.monotonic() < deadline, f"the working sinks did not forward: {backlogs}"
        assert backlogs["hook-500"] > 0 and backlogs["rabbit-refused"] > 0, backlogs
        # a query string on the device endpoint (uvicorn's TRACE shows the ASGI scope) and on the API
        client.request("POST", f"/auth?sign={QUERY_SECRET}", b"{}", {"Content-Type": "application/json"})
        assert _api(server, "GET", f"/api/devices?api_key={QUERY_SECRET}", api_key) == 200
        assert _api(server, "GET", "/api/devices", BAD_API_KEY) == 401
        client.close()
        logged = ["rabbit-refused", "hook-500"] + (["'query_string': b'***'"] if level == "trace" else [])
        wait_until(server.output, f"the server logging {logged}", 10.0, 0.1,
                   accept=lambda output: all(line in output for line in logged))
    finally:
        server.stop()
        receiver.close()

    output = server.output()
    assert level.upper() in output or level == "warning", f"the server did not log at {level} level"
    assert "rabbit-refused" in output and "hook-500" in output, "the failing sinks were not logged"
    leaks = [name for name, value in seen.items() if value in output]
    assert not leaks, f"found in the server log: {leaks}"
    assert "HTTP Request:" not in output, "httpx's per-request lines are back"
    if level == "trace":
        assert "'query_string': b'***'" in output, "uvicorn's ASGI scopes are missing: the test proves less"
    if level != "warning":
        assert "alembic.runtime.migration: Running upgrade" in output, "alembic's lines are missing"

