"""The Alibaba dialect over real HTTPS against a running server: every code of the spec's error table."""

import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.support import DeviceClient, ServerProcess, cli, client_context, stores_of, wait_until
from thingport.core.tokens import TokenClaims, TokenCodec
from thingport.store.keys import KeyRing


def topic_of(d: dict, suffix: str = "user/update") -> str:
    return f"/{d['productKey']}/{d['deviceName']}/{suffix}"


def assert_compact_reply(reply, code: int) -> dict:  # type: ignore[no-untyped-def]
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.raw)
    assert "transfer-encoding" not in reply.headers
    doc = reply.json
    assert reply.raw == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()  # compact JSON
    assert doc["code"] == code, doc
    return doc


@pytest.fixture
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    c = server.client()
    yield c
    c.close()


# --- /auth ---

@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
def test_auth_succeeds_with_every_sign_method(client: DeviceClient, device: dict, method: str) -> None:
    reply = client.auth(device["productKey"], device["deviceName"], device["deviceSecret"], method=method)
    doc = assert_compact_reply(reply, 0)
    assert doc["message"] == "success"
    assert len(reply.raw) < 256
    assert 0 < len(doc["info"]["token"]) <= 64


def test_sign_is_accepted_in_upper_case_and_timestamp_as_number_or_absent(client: DeviceClient, device: dict) -> None:
    from thingport.core.signing import aliyun_sign

    pk, dn, secret = device["productKey"], device["deviceName"], device["deviceSecret"]
    now = int(time.time() * 1000)
    params = {"productKey": pk, "deviceName": dn, "clientId": "c1", "timestamp": str(now)}
    sign = aliyun_sign(secret, params, "hmacsha1").upper()
    body = {"productKey": pk, "deviceName": dn, "clientId": "c1", "timestamp": now, "signmethod": "hmacsha1",
            "sign": sign}
    assert_compact_reply(client.post_json("/auth", body), 0)
    no_ts = {"productKey": pk, "deviceName": dn, "clientId": "c1"}
    body = {**no_ts, "sign": aliyun_sign(secret, no_ts, "hmacmd5")}  # signmethod defaults to hmacmd5
    assert_compact_reply(client.post_json("/auth", body), 0)


def test_content_type_may_carry_parameters(client: DeviceClient, device: dict) -> None:
    from thingport.core.signing import aliyun_sign

    params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": "c1"}
    body = json.dumps({**params, "sign": aliyun_sign(device["deviceSecret"], params)}).encode()
    reply = client.request("POST", "/auth", body, {"Content-Type": "application/json; charset=utf-8"})
    assert_compact_reply(reply, 0)


def test_tokens_live_seven_days(client: DeviceClient, server: ServerProcess, device: dict) -> None:
    reply = client.auth(device["productKey"], device["deviceName"], device["deviceSecret"])
    claims = TokenCodec(KeyRing(server.data_dir).token_key).verify(assert_compact_reply(reply, 0)["info"]["token"],
                                                                   time.time())
    assert claims.expires_s - claims.issued_ms // 1000 == 7 * 24 * 3600


def test_token_lifetime_is_configurable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pk = cli(data_dir, "product", "create", "--name", "p")["productKey"]
    d = cli(data_dir, "device", "create", "--product-key", pk, "--name", "dev-ttl")
    server = ServerProcess(data_dir, {"THINGPORT_ALIYUN_TOKEN_TTL_S": "120"}).start()
    try:
        token = server.client().token(pk, d["deviceName"], d["deviceSecret"])
        claims = TokenCodec(KeyRing(data_dir).token_key).verify(token, time.time())
        assert claims.expires_s - claims.issued_ms // 1000 == 120
    finally:
        server.stop()


def test_client_id_length_limit(client: DeviceClient, device: dict) -> None:
    args = (device["productKey"], device["deviceName"], device["deviceSecret"])
    assert_compact_reply(client.auth(*args, client_id="c" * 64), 0)
    doc = assert_compact_reply(client.auth(*args, client_id="c" * 65), 10001)
    assert "clientId" in doc["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1,2]", "application/json", "JSON object"),
        (b'{"deviceName":"dev-x","clientId":"c","sign":"00"}', "application/json", "productKey is required"),
        (b'{"productKey":"pk01","clientId":"c","sign":"00"}', "application/json", "deviceName is required"),
        (b'{"productKey":"pk01","deviceName":"dev-x","sign":"00"}', "application/json", "clientId is required"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"","sign":"00"}', "application/json",
         "clientId is required"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c"}', "application/json", "sign is required"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c","sign":"00","timestamp":"soon"}',
         "application/json", "timestamp"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c","sign":"00","signmethod":"hmacsha512"}',
         "application/json", "signmethod"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c","sign":"00","timestamp":1.5}',
         "application/json", "timestamp must be a string or an integer"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":{"a":1},"sign":"00"}',
         "application/json", "clientId must be"),
        (b'{"productKey":"pk01","deviceName":"x","clientId":"c","sign":"00"}', "application/json",
         "deviceName must be"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c","sign":"00"}', "text/plain", "Content-Type"),
        (b'{"productKey":"pk01","deviceName":"dev-x","clientId":"c","sign":"00"}', "", "Content-Type"),
        (b'{"productKey":"' + b"a" * 5000 + b'"}', "application/json", "larger than"),
    ],
)
def test_bad_auth_requests_are_param_errors(client: DeviceClient, body: bytes, content_type: str, says: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    doc = assert_compact_reply(client.request("POST", "/auth", body, headers), 10001)
    assert doc["message"].startswith("param error: ") and says in doc["message"]


def test_auth_check_errors(client: DeviceClient, server: ServerProcess, device: dict) -> None:
    pk, dn, secret = device["productKey"], device["deviceName"], device["deviceSecret"]
    now = int(time.time() * 1000)
    cases = [
        (client.auth(pk, "no-such-device", secret), "does not exist"),
        (client.auth(pk, dn, secret + "x"), "signature"),
        (client.auth(pk, dn, secret, timestamp=now - 16 * 60_000), "timestamp"),
        (client.auth(pk, dn, secret, timestamp=now + 16 * 60_000), "timestamp"),
    ]
    for reply, says in cases:
        doc = assert_compact_reply(reply, 20000)
        assert doc["message"].startswith("auth check error") and says in doc["message"], doc
    assert_compact_reply(client.auth(pk, dn, secret, timestamp=now - 14 * 60_000), 0)
    assert_compact_reply(client.auth(pk, dn, secret, timestamp=now + 14 * 60_000), 0)
    cli(server.data_dir, "device", "disable", "--product-key", pk, "--name", dn)
    doc = assert_compact_reply(client.auth(pk, dn, secret), 20000)
    assert "disabled" in doc["message"]


# --- /topic ---

def test_publish_returns_time_ordered_64_bit_message_ids_and_stores_the_message(
    client: DeviceClient, server: ServerProcess, device: dict
) -> None:
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    ids = []
    for i in range(5):
        reply = client.publish(topic_of(device), b"payload-%d" % i, token)
        doc = assert_compact_reply(reply, 0)
        assert re.search(rb'"messageId":\d+\}', reply.raw)  # a JSON number, not a string
        ids.append(doc["info"]["messageId"])
    assert ids == sorted(ids) and len(set(ids)) == 5 and all(0 < i < 2**63 for i in ids)
    tail = [json.loads(line) for line in _tail(server.data_dir, 100)]
    stored = {m["messageId"]: m for m in tail}
    for i, message_id in enumerate(ids):
        assert stored[message_id]["topic"] == topic_of(device)
        assert stored[message_id]["size"] == len(b"payload-%d" % i)


def _tail(data_dir: Path, limit: int) -> list[str]:
    from click.testing import CliRunner

    from thingport.cli import main

    result = CliRunner().invoke(
        main, ["messages", "tail", "--limit", str(limit), "--json", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize(
    "suffix",
    ["user/update", "user/a/b/c"],
)
def test_custom_topics(client: DeviceClient, device: dict, suffix: str) -> None:
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    assert_compact_reply(client.publish(topic_of(device, suffix), b"x", token), 0)


def test_system_topics(client: DeviceClient, device: dict) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    token = client.token(pk, dn, device["deviceSecret"])
    for topic in (f"/sys/{pk}/{dn}/thing/event/property/post", f"/sys/{pk}/{dn}/thing/event/property/batch/post",
                  f"/sys/{pk}/{dn}/thing/event/alarm/post", f"/sys/{pk}/{dn}/thing/deviceinfo/update",
                  f"/ota/device/inform/{pk}/{dn}"):
        assert_compact_reply(client.publish(topic, b'{"id":"1","params":{}}', token), 0)


def test_topics_not_allowed_are_refused_with_the_rule(
    client: DeviceClient, server: ServerProcess, device: dict
) -> None:
    other = cli(server.data_dir, "device", "create", "--product-key", device["productKey"], "--name", "neighbour")
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    before = _tail(server.data_dir, 1)
    for topic, says in [
        (topic_of(other), "only to its own topics"),
        (f"/sys/{other['productKey']}/{other['deviceName']}/thing/event/property/post", "only to its own topics"),
        (topic_of(device, "user/a%2Fb"), "custom topics"),
        (topic_of(device, "user/a/../b"), "custom topics"),
        (topic_of(device, "get"), "custom topics"),
    ]:
        doc = assert_compact_reply(client.publish(topic, b"x", token), 30001)
        assert doc["message"].startswith("publish message error") and says in doc["message"], (topic, doc)
    assert _tail(server.data_dir, 1) == before  # nothing stored


def test_body_limit_is_128_kb(client: DeviceClient, device: dict) -> None:
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    assert_compact_reply(client.publish(topic_of(device), b"a" * (128 * 1024), token), 0)
    doc = assert_compact_reply(client.publish(topic_of(device), b"a" * (129 * 1024), token), 10001)
    assert "larger than" in doc["message"]
    assert_compact_reply(client.publish(topic_of(device), b"a" * (128 * 1024 + 1), token), 10001)


def test_publish_param_errors(client: DeviceClient, device: dict) -> None:
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    path = "/topic" + topic_of(device)
    doc = assert_compact_reply(client.publish(topic_of(device), b"x", token, content_type="application/json"), 10001)
    assert "application/octet-stream" in doc["message"]
    reply = client.request("POST", path + "?a=1", b"x", {"password": token, "Content-Type": "application/octet-stream"})
    assert "query" in assert_compact_reply(reply, 10001)["message"]
    for method in ("GET", "PUT", "DELETE"):
        reply = client.request(method, path, b"", {"password": token})
        assert "only POST" in assert_compact_reply(reply, 10001)["message"]
    assert "only POST" in assert_compact_reply(client.request("GET", "/auth"), 10001)["message"]


def test_token_errors(client: DeviceClient, server: ServerProcess, device: dict) -> None:
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    doc = assert_compact_reply(client.publish(topic_of(device), b"x", None), 20002)
    assert doc["message"].startswith("token is null")
    assert_compact_reply(client.publish(topic_of(device), b"x", ""), 20002)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    doc = assert_compact_reply(client.publish(topic_of(device), b"x", forged), 20003)
    assert doc["message"].startswith("check token error")
    assert_compact_reply(client.publish(topic_of(device), b"x", "not-a-token"), 20003)
    # an authentic token past its validity: re-issued with the server's key and an expiry in the past
    codec = TokenCodec(KeyRing(server.data_dir).token_key)
    claims = codec.verify(token, time.time())
    expired = codec.issue(
        TokenClaims(claims.dialect, claims.device_id, claims.epoch, claims.issued_ms, int(time.time()) - 1)
    )
    doc = assert_compact_reply(client.publish(topic_of(device), b"x", expired), 20001)
    assert doc["message"].startswith("token is expired")


@pytest.mark.parametrize("change", ["disable", "delete", "reset-secret"])
def test_registry_changes_from_the_cli_kill_tokens_within_a_second(
    client: DeviceClient, server: ServerProcess, device: dict, change: str
) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    token = client.token(pk, dn, device["deviceSecret"])
    assert_compact_reply(client.publish(topic_of(device), b"x", token), 0)
    cli(server.data_dir, "device", change, "--product-key", pk, "--name", dn)
    wait_until(lambda: client.publish(topic_of(device), b"x", token).json["code"] == 20003,
               f"the token refused after device {change}", 1.0)
    if change == "disable":  # re-enabling does not revive tokens issued before
        cli(server.data_dir, "device", "enable", "--product-key", pk, "--name", dn)
        wait_until(lambda: client.auth(pk, dn, device["deviceSecret"]).json["code"] == 0,
                   "the running server takes the enable (the device authenticates again)", 2.0, 0.05)
        assert_compact_reply(client.publish(topic_of(device), b"x", token), 20003)
        assert_compact_reply(client.auth(pk, dn, device["deviceSecret"]), 0)
    if change == "reset-secret":
        assert_compact_reply(client.auth(pk, dn, device["deviceSecret"]), 20000)


def test_unknown_paths_are_404_in_json(client: DeviceClient) -> None:
    reply = client.request("POST", "/nothing-here", b"x")
    assert reply.status == 404 and reply.json["code"] == 10001


# --- connections ---

def _raw_exchange(server: ServerProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with client_context(server.cert).wrap_socket(sock) as tls:
            tls.sendall(request)
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def test_http_1_0_gets_an_exact_length_reply_and_the_connection_closes(server: ServerProcess, device: dict) -> None:
    client = server.client()
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    client.close()
    body = b'{"temp":21}'
    request = (
        f"POST /topic{topic_of(device)} HTTP/1.0\r\nHost: x\r\npassword: {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    raw = _raw_exchange(server, request)  # returns only because the server closed the connection
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in head.lower()
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    assert length == len(payload)
    assert json.loads(payload)["code"] == 0
    assert all(len(line) < 100 for line in head.split(b"\r\n"))


def test_keep_alive_and_one_connection_per_request(server: ServerProcess, device: dict) -> None:
    keep = server.client()
    token = keep.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    sock_before = keep.connection().sock
    for _ in range(20):
        assert keep.publish(topic_of(device), b"k", token).json["code"] == 0
    assert keep.connection().sock is sock_before  # one connection served them all
    keep.close()
    for _ in range(10):
        once = server.client()
        reply = once.request("POST", "/topic" + topic_of(device), b"c",
                             {"password": token, "Content-Type": "application/octet-stream", "Connection": "close"})
        assert reply.json["code"] == 0
        once.close()


def test_messages_tail_follow_prints_new_messages_as_they_arrive(
    client: DeviceClient, server: ServerProcess, device: dict
) -> None:
    import select
    import subprocess
    import sys

    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    follower = subprocess.Popen(
        [sys.executable, "-m", "thingport", "messages", "tail", "--limit", "1", "--follow", "--interval", "0.1",
         "--data-dir", str(server.data_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert follower.stdout is not None  # it prints the current newest, then follows from there
        wait_until(lambda: select.select([follower.stdout], [], [], 0)[0], "tail printing the current newest", 10)
        follower.stdout.readline()
        message_id = client.publish(topic_of(device, "user/followed"), b"12345", token).json["info"]["messageId"]
        assert follower.stdout is not None
        deadline = time.monotonic() + 10
        line = ""
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            if str(message_id) in line:
                break
        fields = line.split()
        assert [fields[0], *fields[2:], ] == [str(message_id), f"{device['productKey']}/{device['deviceName']}",
                                             topic_of(device, "user/followed"), "custom", "5B", "12345"]
    finally:
        follower.terminate()
        follower.wait(5)


# --- what real device firmware sends (issue 17) ---

def _stored(server: ServerProcess, message_id: int):  # type: ignore[no-untyped-def]
    import asyncio

    with stores_of(server.settings()) as stores:
        return {m.message_id: m for m in asyncio.run(stores.log.newest(100))}[message_id]


@pytest.mark.parametrize("query", ["?_v=sdk-c-4.1.0&", "?", "?_v=sdk-c-4.1.0&a=1&b=&c", "?%00=%ff"])
def test_auth_accepts_and_ignores_query_strings(client: DeviceClient, device: dict, query: str) -> None:
    """The Link SDK 4.x sends `POST /auth?_v=sdk-c-4.1.0&`; /topic keeps refusing query strings."""
    from thingport.core.signing import aliyun_sign

    params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": "c1",
              "timestamp": str(int(time.time() * 1000))}
    body = {**params, "signmethod": "hmacsha256", "sign": aliyun_sign(device["deviceSecret"], params, "hmacsha256")}
    reply = client.post_json("/auth" + query, body)
    token = assert_compact_reply(reply, 0)["info"]["token"]
    headers = {"password": token, "Content-Type": "application/octet-stream"}
    if query != "?":  # a bare "?" carries no query string (the server sees none)
        refused = client.request("POST", "/topic" + topic_of(device) + query, b"x", headers)
        assert "query strings are not supported" in assert_compact_reply(refused, 10001)["message"]
    assert_compact_reply(client.publish(topic_of(device), b"x", token), 0)


def test_trailing_nul_is_tolerated_on_alink_topics_and_stored_as_received(
    client: DeviceClient, server: ServerProcess, device: dict
) -> None:
    """The older C SDK sends strlen(payload) + 1 bytes: the values are kept, the payload stays byte for byte."""
    pk, dn = device["productKey"], device["deviceName"]
    token = client.token(pk, dn, device["deviceSecret"])
    cases = [
        (f"/sys/{pk}/{dn}/thing/event/property/post", b'{"id":"1","params":{"nul":1}}\x00'),
        (f"/sys/{pk}/{dn}/thing/event/property/post", b'{"id":"2","params":{"ws":2}}\r\n\x00\n'),
        (f"/sys/{pk}/{dn}/thing/event/property/batch/post",
         b'{"id":"3","params":{"properties":{"batch":[{"value":3,"time":1700000000000}]}}}\x00'),
        (f"/sys/{pk}/{dn}/thing/event/alarm/post", b'{"id":"4","params":{"value":{"level":1}}}\x00'),
    ]
    for topic, payload in cases:
        message_id = assert_compact_reply(client.publish(topic, payload, token), 0)["info"]["messageId"]
        stored = _stored(server, message_id)
        assert stored.payload == payload  # exactly as received, NUL included
        reply = json.loads(stored.reply)
        assert reply["code"] == 200, reply
    status = cli(server.data_dir, "device", "status", "--product-key", pk, "--name", dn)
    assert {k: v["value"] for k, v in status["properties"].items()} == {"nul": 1, "ws": 2, "batch": 3}
    # two NULs, or a NUL inside, are not the C SDK's: still "not JSON", still stored as received
    for payload in (b'{"id":"5","params":{"x":1}}\x00\x00', b'{"id":"6",\x00"params":{"x":1}}'):
        message_id = assert_compact_reply(
            client.publish(f"/sys/{pk}/{dn}/thing/event/property/post", payload, token), 0)["info"]["messageId"]
        stored = _stored(server, message_id)
        assert stored.payload == payload and json.loads(stored.reply)["code"] == 6207
    # raw topics store the bytes as they are
    message_id = assert_compact_reply(client.publish(topic_of(device), b"raw\x00", token), 0)["info"]["messageId"]
    assert _stored(server, message_id).payload == b"raw\x00"


def test_auth_body_with_a_trailing_nul_is_accepted(client: DeviceClient, device: dict) -> None:
    from thingport.core.signing import aliyun_sign

    params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": "c1",
              "timestamp": str(int(time.time() * 1000))}
    body = json.dumps({**params, "sign": aliyun_sign(device["deviceSecret"], params)}).encode() + b"\x00"
    assert_compact_reply(client.request("POST", "/auth", body, {"Content-Type": "application/json"}), 0)


def _raw_auth(client: DeviceClient, pairs: list[tuple[str, object]]):  # type: ignore[no-untyped-def]
    """POST /auth with these key/value pairs in this order (duplicates kept)."""
    body = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    return client.request("POST", "/auth", body.encode(), {"Content-Type": "application/json"})


def test_a_stale_auth_body_is_refused_in_every_rewritten_form(client: DeviceClient, device: dict) -> None:
    """A body captured 30 days ago: neither renaming, splitting nor moving its timestamp, nor extra, duplicate or
    case-varied keys, nor the hmacmd5 default, gets it past the 15-minute check (all used to sign the same)."""
    from thingport.core.signing import aliyun_sign

    pk, dn, secret = device["productKey"], device["deviceName"], device["deviceSecret"]
    stale = str(int(time.time() * 1000) - 30 * 86400 * 1000)
    fresh = str(int(time.time() * 1000))
    ids = [("productKey", pk), ("deviceName", dn), ("clientId", "c1")]

    def signed(method: str) -> str:
        return aliyun_sign(secret, {**dict(ids), "timestamp": stale}, method)

    sha, md5 = signed("hmacsha256"), signed("hmacmd5")
    with_sha = [("signmethod", "hmacsha256"), ("sign", sha)]
    forms: list[list[tuple[str, object]]] = [
        ids + [("timestamp", stale)] + with_sha,  # as captured: stale
        ids + [("timestamp", int(stale))] + with_sha,
        ids + [("timestam", "p" + stale)] + with_sha,  # renamed key, the value takes the moved character
        ids + [("timest", "amp" + stale)] + with_sha,
        ids + [("t", "imestamp" + stale)] + with_sha,
        ids + [("time", "stamp" + stale[:6]), ("timestamp_", stale[6:])] + with_sha,  # split over two keys
        ids + [("Timestamp", stale)] + with_sha,  # case variants of the name
        ids + [("TIMESTAMP", stale)] + with_sha,
        ids + [("timestamp ", stale)] + with_sha,
        ids + with_sha,  # no timestamp at all
        ids + [("timestam", "p" + stale), ("version", "default"), ("extra", "x")] + with_sha,
        ids + [("timestamp", fresh), ("timestam", "p" + stale)] + with_sha,  # a fresh timestamp beside it
        ids + [("timestamp", fresh), ("timestamp", stale)] + with_sha,  # duplicate keys, either order
        ids + [("timestamp", stale), ("timestamp", fresh)] + with_sha,
        ids + [("timestam", "p" + stale), ("sign", md5)],  # the hmacmd5 default, signmethod removed
        ids + [("timestam", "p" + stale), ("signmethod", "hmacmd5"), ("sign", md5)],
        ids + [("timestam", "p" + stale), ("sign", sha)],  # signmethod removed from a hmacsha256 body
        [("productKey", pk), ("deviceName", dn), ("clientId", "c1timestamp" + stale)] + with_sha,  # moved into clientId
    ]
    for pairs in forms:
        doc = assert_compact_reply(_raw_auth(client, pairs), 20000)
        assert doc["message"].startswith("auth check error"), (pairs, doc)
    # the same device with a fresh timestamp, and any unsigned extras, still authenticates
    fresh_sign = aliyun_sign(secret, {**dict(ids), "timestamp": fresh}, "hmacsha256")
    extras = [("version", "default"), ("timestam", "p1"), ("Timestamp", stale), ("_v", "sdk-c-4.1.0")]
    pairs = ids + [("timestamp", fresh)] + extras + [("signmethod", "hmacsha256"), ("sign", fresh_sign)]
    assert_compact_reply(_raw_auth(client, pairs), 0)
