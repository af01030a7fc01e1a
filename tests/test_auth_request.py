"""``thingport device auth-request``: what it prints authenticates against a real server, in both dialects,
as a body and as a curl command."""

import json
import subprocess

import pytest
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main


def auth_request(server: ServerProcess, device: dict, *args: str) -> str:
    result = CliRunner().invoke(main, ["device", "auth-request", "--product-key", device["productKey"],
                                       "--name", device["deviceName"], "--data-dir", str(server.data_dir), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("method", ["hmacsha256", "hmacsha1", "hmacmd5"])
def test_the_aliyun_body_gets_a_token(server: ServerProcess, device: dict, method: str) -> None:
    body = json.loads(auth_request(server, device, "--sign-method", method))
    assert body["signmethod"] == method and "deviceSecret" not in body
    reply = server.client().post_json("/auth", body)
    assert reply.json["code"] == 0, reply.json
    assert reply.json["info"]["token"]


def test_the_iotda_body_gets_a_token(server: ServerProcess, device: dict) -> None:
    body = json.loads(auth_request(server, device, "--dialect", "iotda"))
    assert body["device_id"] == device["deviceId"]
    reply = server.client().post_json("/v5/device-auth", body)
    assert reply.status == 200, reply.raw
    assert reply.json["access_token"]


@pytest.mark.parametrize("dialect", ["aliyun", "iotda"])
def test_the_curl_command_authenticates(server: ServerProcess, device: dict, dialect: str) -> None:
    command = auth_request(server, device, "--dialect", dialect, "--curl",
                           "--endpoint", f"https://localhost:{server.port}").strip()
    assert command.startswith(f"curl -sS --cacert {server.cert} https://localhost:{server.port}/")
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    reply = json.loads(run.stdout)
    assert (reply["info"]["token"] if dialect == "aliyun" else reply["access_token"])


def test_a_given_secret_needs_no_data_dir(server: ServerProcess, tmp_path, device: dict) -> None:
    result = CliRunner().invoke(main, ["device", "auth-request", "--product-key", device["productKey"],
                                       "--device-name", device["deviceName"], "--secret", device["deviceSecret"],
                                       "--data-dir", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["dialect"] == "aliyun" and doc["method"] == "POST" and doc["path"] == "/auth"
    assert doc["curl"].startswith("curl -sS ")
    assert not (tmp_path / "nowhere").exists()
    assert server.client().post_json("/auth", doc["body"]).json["code"] == 0


def test_a_wrong_secret_is_refused(server: ServerProcess, device: dict) -> None:
    body = json.loads(auth_request(server, device, "--secret", "not-the-secret"))
    assert server.client().post_json("/auth", body).json["code"] != 0


def test_an_unknown_device_is_one_error_line(server: ServerProcess, device: dict) -> None:
    result = CliRunner().invoke(main, ["device", "auth-request", "--product-key", device["productKey"],
                                       "--name", "nosuch", "--data-dir", str(server.data_dir)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_a_disabled_device_body_is_refused(server: ServerProcess, device: dict) -> None:
    cli(server.data_dir, "device", "disable", "--product-key", device["productKey"], "--name", device["deviceName"])
    body = json.loads(auth_request(server, device))
    assert server.client().post_json("/auth", body).json["code"] != 0
