"""sql_log's batch helpers: what one transaction writes for the latest values of a batch's reports."""

from thingport.core.model import StoredMessage, ValuesAt
from thingport.store.sql_log import _newest_per_property


def report(message_id: int, device_id: int, *groups: tuple[int, dict]) -> StoredMessage:
    return StoredMessage(message_id, device_id, "pk", f"dev-{device_id}", "aliyun", "/t", b"", groups[0][0],
                         "property_post", properties=tuple(ValuesAt(at, values) for at, values in groups))


def test_each_property_takes_its_newest_value_even_when_newer_reports_leave_it_out() -> None:
    rows = _newest_per_property([
        report(1, 7, (1000, {"t": 10, "h": 50})),
        report(2, 7, (3000, {"t": 30})),
        report(3, 7, (2000, {"t": 20, "h": 60})),  # late: newer than message 1 for h, older than 2 for t
    ])
    assert rows == [(7, "h", "60", 2000, 3), (7, "t", "30", 3000, 2)]


def test_a_tie_in_time_goes_to_the_later_message() -> None:
    rows = _newest_per_property([report(1, 7, (1000, {"t": 1})), report(2, 7, (1000, {"t": 2}))])
    assert rows == [(7, "t", "2", 1000, 2)]
    # later in the batch, not the larger message id: ids are handed out before the batch is formed
    rows = _newest_per_property([report(2, 7, (1000, {"t": 1})), report(1, 7, (1000, {"t": 2}))])
    assert rows == [(7, "t", "2", 1000, 1)]


def test_one_message_with_values_for_several_times_and_several_devices_in_lock_order() -> None:
    rows = _newest_per_property([
        report(1, 9, (5000, {"b": [1, 2]}), (4000, {"b": [0], "a": "x"})),
        report(2, 3, (100, {"z": True})),
        report(3, 9, (4500, {"a": "y"})),
    ])
    assert rows == [(3, "z", "true", 100, 2), (9, "a", '"y"', 4500, 3), (9, "b", "[1,2]", 5000, 1)]


def test_messages_without_property_values_write_no_latest_value() -> None:
    plain = StoredMessage(1, 7, "pk", "dev-7", "aliyun", "/t", b"x", 1000)
    assert _newest_per_property([plain]) == []
