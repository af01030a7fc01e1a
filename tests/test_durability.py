"""An acknowledged message survives the server being killed with SIGKILL under load."""

import asyncio
import threading
import time
from pathlib import Path

from tests.support import ServerProcess, cli
from thingport.settings import load_settings
from thingport.stores import open_stores


def stored_ids(data_dir: Path) -> set[int]:
    stores = open_stores(load_settings(data_dir=data_dir))
    try:
        return {m.message_id for m in asyncio.run(stores.log.newest(1_000_000))}
    finally:
        stores.close()


def test_sigkill_under_load_loses_no_acknowledged_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    devices = [cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"dev-{i}")
               for i in range(6)]
    server = ServerProcess(data_dir).start()
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def report(device: dict) -> None:
        client = server.client()
        pk, dn = device["productKey"], device["deviceName"]
        token = client.token(pk, dn, device["deviceSecret"])
        n = 0
        while not stop.is_set():
            try:
                doc = client.publish(f"/{pk}/{dn}/user/load", b"reading-%d" % n, token).json
            except Exception:  # the server died mid-request: that one was never acknowledged
                return
            if doc["code"] == 0:
                with lock:
                    acked.append(doc["info"]["messageId"])
            n += 1
            # default device rate limit is 100/s; stay well under it
            time.sleep(0.012)

    threads = [threading.Thread(target=report, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 200, "the load was too light to prove anything"
    assert set(acked) <= stored_ids(data_dir)

    restarted = ServerProcess(data_dir).start()  # and the server comes back on the same data
    try:
        client = restarted.client()
        d = devices[0]
        token = client.token(d["productKey"], d["deviceName"], d["deviceSecret"])
        after = client.publish(f"/{d['productKey']}/{d['deviceName']}/user/load", b"after", token).json
        assert after["code"] == 0 and after["info"]["messageId"] > max(acked)
        client.close()
    finally:
        restarted.stop()
    assert set(acked) | {after["info"]["messageId"]} <= stored_ids(data_dir)
