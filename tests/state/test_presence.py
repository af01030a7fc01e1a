import asyncio

from thingport.core.model import Device
from thingport.state.presence import PresenceTracker


def device(i: int) -> Device:
    return Device(i, "pk", f"dev-{i}", True, 0, 0, "s", device_id=f"pk_dev-{i}")


def test_online_once_then_offline_after_its_timeout() -> None:
    emitted: list[tuple[str, str, int]] = []

    async def emit(d: Device, status: str, at: int, reason: str) -> None:
        emitted.append((d.device_name, status, at))

    async def main() -> None:
        tracker = PresenceTracker(emit)
        assert tracker.seen(device(1), 1000, 5000) is True  # was offline: caller emits online
        assert tracker.seen(device(1), 2000, 5000) is False
        tracker.seen(device(2), 1000, 60_000)
        assert await tracker.sweep(6999) == 0  # 4999 ms of silence
        assert await tracker.sweep(7000) == 1
        assert emitted == [("dev-1", "offline", 7000)] and not tracker.online(1) and tracker.online(2)
        assert tracker.seen(device(1), 8000, 5000) is True  # online again

    asyncio.run(main())


def test_resumed_devices_go_offline_without_an_online_event() -> None:
    emitted: list[str] = []

    async def emit(d: Device, status: str, at: int, reason: str) -> None:
        emitted.append(status)

    async def main() -> None:
        tracker = PresenceTracker(emit)
        tracker.resume(device(3), 1000, 5000)
        assert tracker.seen(device(3), 2000, 5000) is False
        await tracker.sweep(7000)
        assert emitted == ["offline"]

    asyncio.run(main())
