import datetime

from thingport.core.timestamps import MAX_FUTURE_MS, datetime_ms, parse_iotda_time, sample_time

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


def test_iotda_event_time_is_exact_to_the_millisecond() -> None:
    # float seconds times 1000 would give ...739 here: the time a device gave is kept as it gave it
    assert parse_iotda_time("1970-07-17T01:37:20.740Z") == 17026640740
    assert parse_iotda_time("2024-02-29T23:59:59.999Z") == 1709251199999


def test_iotda_event_time_out_of_range_fields_are_malformed() -> None:
    for bad in ("2021-02-30T10:10:10.555Z", "2021-08-13T24:00:00.000Z", "20210813T106010Z"):
        assert parse_iotda_time(bad) is None


def test_iotda_event_time_with_short_fields_is_read_as_strptime_reads_it() -> None:
    assert parse_iotda_time("2021-8-3T1:2:3.5Z") == 1627952523500 == parse_iotda_time("2021-08-03T01:02:03.500Z")


def test_datetime_ms_is_exact_and_takes_a_naive_time_as_local_time() -> None:
    utc = datetime.UTC
    assert datetime_ms(datetime.datetime(1970, 7, 17, 1, 37, 20, 740000, tzinfo=utc)) == 17026640740
    assert datetime_ms(datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=utc)) == -1
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5, 6000)
    assert datetime_ms(naive) == round(naive.timestamp() * 1000)
