from thingport.core.timestamps import MAX_FUTURE_MS, parse_iotda_time, sample_time

NOW = 1_800_000_000_000


def test_sample_time_uses_sane_device_time_only() -> None:
    assert sample_time(NOW - 5000, NOW) == NOW - 5000
    assert sample_time(NOW + MAX_FUTURE_MS, NOW) == NOW + MAX_FUTURE_MS
    assert sample_time(NOW + MAX_FUTURE_MS + 1, NOW) == NOW
    assert sample_time(None, NOW) == NOW
    assert sample_time(0, NOW) == NOW
    assert sample_time(-1, NOW) == NOW


def test_iotda_event_time_formats() -> None:
    assert parse_iotda_time("2021-08-13T10:10:10.555Z") == 1628849410555
    assert parse_iotda_time("20210813T101010Z") == 1628849410000
    for bad in (None, 5, "", "2021-08-13 10:10:10", "20211313T101010Z", "x" * 100):
        assert parse_iotda_time(bad) is None
