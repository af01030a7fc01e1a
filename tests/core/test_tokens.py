import pytest

from thingport.core.errors import TokenExpired, TokenInvalid
from thingport.core.tokens import DIALECT_ALIYUN, TokenClaims, TokenCodec

KEY = b"k" * 32
CLAIMS = TokenClaims(DIALECT_ALIYUN, device_id=42, epoch=3, issued_ms=1_700_000_000_000, expires_s=1_700_604_800)


def test_round_trip_and_length_fits_device_sdks() -> None:
    token = TokenCodec(KEY).issue(CLAIMS)
    assert len(token) <= 64
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    assert TokenCodec(KEY).verify(token, now_s=1_700_000_001) == CLAIMS


def test_expired_token() -> None:
    token = TokenCodec(KEY).issue(CLAIMS)
    with pytest.raises(TokenExpired):
        TokenCodec(KEY).verify(token, now_s=CLAIMS.expires_s)
    TokenCodec(KEY).verify(token, now_s=CLAIMS.expires_s - 1)


def test_forged_tampered_or_foreign_tokens_are_invalid() -> None:
    token = TokenCodec(KEY).issue(CLAIMS)
    with pytest.raises(TokenInvalid):
        TokenCodec(b"x" * 32).verify(token, now_s=0)
    for i in range(len(token)):  # any single changed character breaks it
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(TokenInvalid):
            TokenCodec(KEY).verify(flipped, now_s=0)
    for bad in ("", "short", token + "A", "!" * len(token)):
        with pytest.raises(TokenInvalid):
            TokenCodec(KEY).verify(bad, now_s=0)


def test_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        TokenCodec(b"short")


def test_a_token_has_one_spelling() -> None:
    token = TokenCodec(KEY).issue(CLAIMS)
    alias = token.replace("-", "+").replace("_", "/")
    if alias == token:  # make sure the alias differs: flip an alphabet-equivalent character in
        alias = token[:-1] + {"-": "+", "_": "/"}.get(token[-1], token[-1])
    if alias != token:
        with pytest.raises(TokenInvalid):
            TokenCodec(KEY).verify(alias, now_s=0)
    with pytest.raises(TokenInvalid):
        TokenCodec(KEY).verify(token[:-1] + "!", now_s=0)


# --- IoTDA supersession ---

def test_each_superseded_token_lives_30_s_from_its_supersession() -> None:
    from thingport.core.tokens import supersede, superseded_token_alive

    newest, older = supersede(None, (), 1_000)
    assert (newest, older) == (1_000, ())
    newest, older = supersede(newest, older, 11_000)
    newest, older = supersede(newest, older, 21_000)
    assert newest == 21_000 and older == ((1_000, 11_000), (11_000, 21_000))
    assert superseded_token_alive(older, 1_000, 40_999) and not superseded_token_alive(older, 1_000, 41_000)
    assert superseded_token_alive(older, 11_000, 50_999) and not superseded_token_alive(older, 11_000, 51_000)
    assert not superseded_token_alive(older, 5_000, 21_000)  # never issued
    # past their grace when the next one comes: dropped
    assert supersede(newest, older, 60_000) == (60_000, ((21_000, 60_000),))


def test_superseded_tokens_are_bounded_and_out_of_order_issues_are_superseded_at_once() -> None:
    from thingport.core.tokens import MAX_SUPERSEDED_TOKENS, supersede, superseded_token_alive

    newest, older = None, ()
    for at in range(0, 100 * 10, 10):  # 100 tokens within a second
        newest, older = supersede(newest, older, at)
    assert len(older) == MAX_SUPERSEDED_TOKENS and older[-1] == (980, 990) and newest == 990
    # another instance's clock is behind: its token is older than the newest, which supersedes it now
    newest, older = supersede(newest, older, 985)
    assert newest == 990 and (985, 990) in older and superseded_token_alive(older, 985, 1_000)
    assert supersede(newest, older, 990) == (990, older)  # the same millisecond again: the same token
