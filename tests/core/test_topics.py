import pytest

from thingport.core.errors import TopicDenied
from thingport.core.topics import MAX_TOPIC_LENGTH, TopicKind, classify_topic

PK, DN = "a1B2c3D4e5F", "dev-01"


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        (f"/{PK}/{DN}/user/update", TopicKind.CUSTOM),
        (f"/{PK}/{DN}/user/a/b_2/C", TopicKind.CUSTOM),
        (f"/sys/{PK}/{DN}/thing/event/property/post", TopicKind.PROPERTY_POST),
        (f"/sys/{PK}/{DN}/thing/event/property/batch/post", TopicKind.PROPERTY_BATCH_POST),
        (f"/sys/{PK}/{DN}/thing/event/overheat/post", TopicKind.EVENT_POST),
        (f"/sys/{PK}/{DN}/thing/deviceinfo/update", TopicKind.DEVICEINFO_UPDATE),
        (f"/ota/device/inform/{PK}/{DN}", TopicKind.OTA_INFORM),
    ],
)
def test_own_topics_are_allowed(topic: str, kind: TopicKind) -> None:
    assert classify_topic(topic, PK, DN).kind is kind


def test_event_identifier_is_extracted() -> None:
    assert classify_topic(f"/sys/{PK}/{DN}/thing/event/overheat/post", PK, DN).event == "overheat"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        (f"/{PK}/other-dev/user/update", "only to its own topics"),
        (f"/sys/{PK}/other-dev/thing/event/property/post", "only to its own topics"),
        (f"/ota/device/inform/{PK}/other-dev", "only to its own topics"),
        (f"/{PK}/{DN}/user/", "custom topics"),
        (f"/{PK}/{DN}/user//x", "custom topics"),
        (f"/{PK}/{DN}/user/a/../../x", "custom topics"),
        (f"/{PK}/{DN}/user/+", "custom topics"),
        (f"/{PK}/{DN}/user/#", "custom topics"),
        (f"/{PK}/{DN}/user/a%2Fb", "custom topics"),
        (f"/{PK}/{DN}/get", "custom topics"),
        (f"/sys/{PK}/{DN}/thing/service/property/set", "not a system topic"),
        (f"/sys/{PK}/{DN}/thing/event/a.b/post", "not a system topic"),
        (f"/sys/{PK}/{DN}/thing/event//post", "not a system topic"),
        ("/", "only to its own topics"),
        ("", "only to its own topics"),
    ],
)
def test_other_topics_are_refused_with_the_rule(topic: str, reason: str) -> None:
    with pytest.raises(TopicDenied, match=reason):
        classify_topic(topic, PK, DN)


def test_topic_length_limit() -> None:
    prefix = f"/{PK}/{DN}/user/"
    at_limit = prefix + "a" * (MAX_TOPIC_LENGTH - len(prefix))
    assert classify_topic(at_limit, PK, DN).kind is TopicKind.CUSTOM
    with pytest.raises(TopicDenied, match="longer than"):
        classify_topic(at_limit + "a", PK, DN)


def test_declared_categories_decide_publish_permission() -> None:
    from thingport.core.topics import check_category

    categories = dict([check_category("user/get", "sub"), check_category("user/update", "pub"),
                       check_category("user/both", "all")])
    assert classify_topic(f"/{PK}/{DN}/user/update", PK, DN, categories).kind is TopicKind.CUSTOM
    assert classify_topic(f"/{PK}/{DN}/user/both", PK, DN, categories).kind is TopicKind.CUSTOM
    assert classify_topic(f"/{PK}/{DN}/user/undeclared", PK, DN, categories).kind is TopicKind.CUSTOM
    with pytest.raises(TopicDenied, match="declared sub"):
        classify_topic(f"/{PK}/{DN}/user/get", PK, DN, categories)
    for suffix, operation in (("get", "pub"), ("user/a b", "pub"), ("user/x", "write"), ("user/", "all")):
        with pytest.raises(ValueError):
            check_category(suffix, operation)


@pytest.mark.parametrize(
    ("topic_filter", "matching", "not_matching"),
    [
        ("/pk/+/user/update", ["/pk/dev1/user/update"], ["/pk/dev1/user/other", "/pk/a/b/user/update"]),
        ("/pk/dev1/user/#", ["/pk/dev1/user", "/pk/dev1/user/a", "/pk/dev1/user/a/b"], ["/pk/dev2/user/a"]),
        ("#", ["/anything/at/all", ""], []),
        ("/a.b/+", ["/a.b/x"], ["/aXb/x"]),
    ],
)
def test_topic_filters(topic_filter: str, matching: list[str], not_matching: list[str]) -> None:
    from thingport.core.topics import compile_topic_filter

    match = compile_topic_filter(topic_filter)
    assert all(match(t) for t in matching)
    assert not any(match(t) for t in not_matching)


@pytest.mark.parametrize("bad", ["/a/#/b", "/a/b#", "/a+/b"])
def test_bad_topic_filters(bad: str) -> None:
    from thingport.core.topics import compile_topic_filter

    with pytest.raises(ValueError):
        compile_topic_filter(bad)
