"""The core records: what they show of themselves."""

from thingport.core.model import Device


def test_a_device_never_shows_its_secret() -> None:
    """Device is a msgspec Struct (untracked by the GC); its repr, str and the fields it offers ``rich`` leave the
    secret out, as the dataclass it replaced did with ``field(repr=False)``."""
    device = Device(7, "pk01", "dev-a", True, 0, 0, "S3cretThatMustNotLeak", device_id="pk01_dev-a")
    for shown in (repr(device), str(device), f"{device}", f"{[device]}", repr(device.__rich_repr__())):
        assert "S3cretThatMustNotLeak" not in shown
        assert "dev-a" in shown
