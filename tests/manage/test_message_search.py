"""Finding messages: `messages tail` and `GET /api/messages` by product, device, MQTT-style topic filter and
kind, with the payload on the human line (cut to the terminal's width)."""

import json
import re

import httpx
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main


def _send(server: ServerProcess, device: dict, posts: list[tuple[str, bytes]]) -> None:
    client = server.client()
    try:
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        for topic, payload in posts:
            assert client.publish(topic, payload, token).json["code"] == 0
    finally:
        client.close()


def test_messages_are_found_by_device_topic_filter_and_kind(server: ServerProcess, device: dict) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    other = cli(server.data_dir, "device", "create", "--product-key", pk, "--name", f"{dn}-b")
    property_post = json.dumps({"id": "1", "params": {"t": 1}, "method": "thing.event.property.post"}).encode()
    _send(server, device, [(f"/{pk}/{dn}/user/a/x", b'{"n": 1}'), (f"/{pk}/{dn}/user/b", b'{"n": 2}'),
                           (f"/sys/{pk}/{dn}/thing/event/property/post", property_post),
                           (f"/{pk}/{dn}/user/a/y", b"\xff\xfebinary")])
    _send(server, other, [(f"/{pk}/{dn}-b/user/a/x", b'{"n": 3}')])

    def tail(*args: str) -> list[dict]:
        result = CliRunner().invoke(main, ["messages", "tail", "--data-dir", str(server.data_dir), "--json", *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    by_filter = tail("--product-key", pk, "--topic-filter", f"/{pk}/+/user/a/#")
    assert [(m["deviceName"], m["topic"]) for m in by_filter] == [
        (dn, f"/{pk}/{dn}/user/a/x"), (dn, f"/{pk}/{dn}/user/a/y"), (f"{dn}-b", f"/{pk}/{dn}-b/user/a/x")]
    assert by_filter[1]["payloadEncoding"] == "base64"
    assert [m["payload"] for m in tail("--product-key", pk, "--device", dn, "--topic-filter", "/+/+/user/#",
                                        "--limit", "2")] == ['{"n": 2}', "//5iaW5hcnk="]
    assert [m["kind"] for m in tail("--product-key", pk, "--kind", "property_post")] == ["property_post"]

    lines = CliRunner().invoke(main, ["messages", "tail", "--product-key", pk, "--kind", "custom", "--limit", "1",
                                      "--data-dir", str(server.data_dir)]).output.splitlines()
    assert lines[0].endswith(f"  /{pk}/{dn}-b/user/a/x  custom  8B  {{\"n\": 3}}")
    assert re.match(r"\d+  20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  ", lines[0])
    bad = CliRunner().invoke(main, ["messages", "tail", "--topic-filter", "a/#/b", "--data-dir", str(server.data_dir)])
    assert bad.exit_code == 1 and "# a whole last level" in bad.output

    reader = cli(server.data_dir, "apikey", "create", "--name", f"search-{pk}", "--role", "read")["key"]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {reader}"}) as api:
        first = api.get("/api/messages", params={"productKey": pk, "topicFilter": f"/{pk}/+/user/a/#", "limit": 2})
        assert first.status_code == 200, first.text
        page = first.json()
        assert [m["topic"] for m in page["items"]] == [f"/{pk}/{dn}-b/user/a/x", f"/{pk}/{dn}/user/a/y"]
        rest = api.get("/api/messages", params={"productKey": pk, "topicFilter": f"/{pk}/+/user/a/#", "limit": 2,
                                                "before": page["next"]}).json()
        assert [m["topic"] for m in rest["items"]] == [f"/{pk}/{dn}/user/a/x"] and rest["next"] is None
        assert api.get("/api/messages", params={"kind": "nonsense"}).status_code == 400
