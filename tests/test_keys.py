"""Master-key rotation while the server runs: secrets re-sealed, old tokens valid until the old key is pruned."""

import stat
import time
from pathlib import Path

from tests.support import ServerProcess, cli, wait_until
from thingport.core.errors import TokenInvalid
from thingport.core.tokens import TokenCodec
from thingport.store.keys import KeyRing


def test_rotate_then_prune_while_serving(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    device = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-1")
    pk, dn, secret = device["productKey"], device["deviceName"], device["deviceSecret"]
    sealed_before = (data_dir / "thingport.db").read_bytes()
    server = ServerProcess(data_dir).start()
    try:
        client = server.client()
        old_token = client.token(pk, dn, secret)
        topic = f"/{pk}/{dn}/user/t"

        rotated = cli(data_dir, "keys", "rotate")
        assert rotated["keys"] == 2 and rotated["resealed"] == 1
        new_key = TokenCodec(KeyRing(data_dir).token_keys[0])

        def signed_with_the_new_key() -> str | None:
            token = client.token(pk, dn, secret)  # the re-sealed secret opens with the new key
            return token if new_key.verify(token, time.time()) else None

        # the server reloads the key file (every second): its tokens are then signed with the new key
        wait_until(signed_with_the_new_key, "a token signed with the rotated key", 5.0, 0.2, ignore=(TokenInvalid,))
        assert client.publish(topic, b"x", old_token).json["code"] == 0  # the old key still verifies
        new_token = client.token(pk, dn, secret)
        assert new_key.verify(new_token, time.time())

        pruned = cli(data_dir, "keys", "prune")
        assert pruned == {"keys": 1, "current": rotated["current"], "dropped": 1, "resealed": 0}
        wait_until(lambda: client.publish(topic, b"x", old_token).json["code"] == 20003,
                   "the old key's token refused after the prune (signed with a key that is gone)", 2.0, 0.05)
        assert client.publish(topic, b"x", new_token).json["code"] == 0
        assert client.auth(pk, dn, secret).json["code"] == 0
        client.close()
    finally:
        server.stop()
    key_file = data_dir / "master.key"
    assert len(key_file.read_text().split()) == 1 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secret.encode() not in sealed_before


def test_keys_from_the_environment_are_rotated_there(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import base64

    from click.testing import CliRunner

    from thingport.cli import main

    monkeypatch.setenv("THINGPORT_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    created = CliRunner().invoke(main, ["product", "create", "--name", "p", "--data-dir", str(tmp_path / "data")])
    assert created.exit_code == 0
    result = CliRunner().invoke(main, ["keys", "rotate", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "THINGPORT_MASTER_KEY" in result.output
