import pytest

from thingport.core.signing import aliyun_sign, aliyun_sign_matches, sign_content

VECTOR_MD5 = {
    "clientId": "127.0.0.1", "deviceName": "http_test", "productKey": "a1FHTWxQ****", "timestamp": "1567003778853",
}
VECTOR_SHA = {"clientId": "12345", "deviceName": "device", "productKey": "pk", "timestamp": "789"}


def test_content_is_sorted_name_value_pairs_without_unsigned_params() -> None:
    params = {**VECTOR_MD5, "version": "default", "sign": "x", "signmethod": "hmacmd5"}
    assert sign_content(params) == "clientId127.0.0.1deviceNamehttp_testproductKeya1FHTWxQ****timestamp1567003778853"


def test_only_the_protocol_parameters_are_signed() -> None:
    """A renamed timestamp used to sign the same as the real one ("timestam" + "p1567..." == "timestamp1567...")."""
    without_timestamp = {k: v for k, v in VECTOR_MD5.items() if k != "timestamp"}
    renamed = {**without_timestamp, "timestam": "p" + VECTOR_MD5["timestamp"]}
    assert sign_content(renamed) == sign_content(without_timestamp) != sign_content(VECTOR_MD5)
    assert sign_content({**VECTOR_MD5, "zzz": "1", "Timestamp": "2", "_v": "sdk"}) == sign_content(VECTOR_MD5)
    good = aliyun_sign("s", VECTOR_MD5, "hmacmd5")
    assert not aliyun_sign_matches("s", renamed, "hmacmd5", good)


@pytest.mark.parametrize(
    ("secret", "params", "method", "expected"),
    [
        ("89VTJylyMRFuy2T3sywQGbm5Hmk1****", VECTOR_MD5, "hmacmd5", "fc48d767d3807c835de2efec1955b888"),
        ("secret", VECTOR_SHA, "hmacsha1", "fafd82a3d602b37fb0fa8b7892f24a477f851a14"),
        ("secret", VECTOR_SHA, "hmacsha256", "6074a46a91b1ebb2cc4ea42790ad0e80202c9843859fc292e57c4eb19fad9e57"),
    ],
)
def test_spec_vectors(secret: str, params: dict, method: str, expected: str) -> None:
    assert aliyun_sign(secret, params, method) == expected
    assert aliyun_sign_matches(secret, params, method, expected)
    assert aliyun_sign_matches(secret, params, method, expected.upper())


def test_wrong_secret_or_changed_param_does_not_match() -> None:
    good = aliyun_sign("secret", VECTOR_SHA, "hmacsha1")
    assert not aliyun_sign_matches("Secret", VECTOR_SHA, "hmacsha1", good)
    assert not aliyun_sign_matches("secret", {**VECTOR_SHA, "timestamp": "790"}, "hmacsha1", good)
    assert not aliyun_sign_matches("secret", VECTOR_SHA, "hmacsha256", good)
    assert not aliyun_sign_matches("secret", VECTOR_SHA, "hmacsha1", good[:-1])


def test_huawei_spec_vector_and_case() -> None:
    from thingport.core.signing import huawei_password, huawei_password_matches

    expected = "338ce4d607e62fdca760488716216fbe0a19771874db10ce30360e5c777c3e3c"
    assert huawei_password("12345678", "2019120219") == expected
    assert huawei_password_matches("12345678", "2019120219", expected.upper())
    assert not huawei_password_matches("12345678", "2019120220", expected)
    assert not huawei_password_matches("123456789", "2019120219", expected)
