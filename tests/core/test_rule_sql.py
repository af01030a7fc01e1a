"""The rules' SQL dialect: what a statement selects, when WHERE lets a message through, and the errors
(syntax with its position at compile time, a missing field or a type mismatch per message)."""

import pytest

from thingport.core.rule_sql import STATEMENT_MAX, MessageContext, RuleEvalError, RuleSyntaxError, compile_statement

CTX = MessageContext("a1XdW3RQiM6", "dev-7", "/a1XdW3RQiM6/dev-7/user/data", 1_764_800_000_000, 912080266061676544,
                     "a1XdW3RQiM6_dev-7")
POST = {"id": "1", "version": "1.0", "method": "thing.event.property.post",
        "params": {"temperature": 39.5, "humidity": 48, "mode": 1, "tags": ["a", "b"]}}


def run(statement: str, payload: object = POST, ctx: MessageContext = CTX) -> object:
    return compile_statement(statement).evaluate(payload, ctx)


def test_the_seed_example_selects_and_filters() -> None:
    statement = ('SELECT params.temperature, deviceName() AS dn FROM "/a1XdW3RQiM6/+/thing/event/property/post" '
                 "WHERE params.temperature > 38")
    assert run(statement) == {"temperature": 39.5, "dn": "dev-7"}
    assert run(statement, {"params": {"temperature": 21}}) is None
    compiled = compile_statement(statement)
    assert compiled.matches_topic("/a1XdW3RQiM6/dev-7/thing/event/property/post")
    assert not compiled.matches_topic("/a1XdW3RQiM6/dev-7/user/data")
    assert compiled.topic_filter == "/a1XdW3RQiM6/+/thing/event/property/post"


def test_star_arithmetic_functions_and_literals() -> None:
    assert run('select *, 1 + 2 * 3 as seven FROM "#"', {"a": 1}) == {"a": 1, "seven": 7}
    assert run('SELECT round(params.temperature * 1.8 + 32, 1) AS f, abs(-2) AS two, floor(2.7) AS fl, '
               "ceil(2.1) AS ce, round(2.5) AS r FROM \"#\"") == {"f": 103.1, "two": 2, "fl": 2, "ce": 3, "r": 2}
    assert run("SELECT concat(deviceName(), '@', productKey(), '#', params.mode) AS who, upper('x') AS u, "
               "lower('Y') AS l, 'it''s' AS s FROM \"#\"".replace("''", "\\'")) == {
        "who": "dev-7@a1XdW3RQiM6#1", "u": "X", "l": "y", "s": "it's"}
    assert run('SELECT timestamp() AS t, messageId() AS id, deviceId() AS d, topic() AS tp, topic(3) AS t3, '
               'true AS yes, null AS nothing FROM "#"') == {
        "t": 1_764_800_000_000, "id": 912080266061676544, "d": "a1XdW3RQiM6_dev-7",
        "tp": "/a1XdW3RQiM6/dev-7/user/data", "t3": "user", "yes": True, "nothing": None}
    assert run('SELECT params.tags[1] AS second, `params`.`mode` FROM "#"') == {"second": "b", "mode": 1}


def test_where_logic_comparisons_and_null() -> None:
    assert run('SELECT 1 AS x FROM "#" WHERE params.mode = 1 AND NOT params.humidity >= 50 OR false') == {"x": 1}
    assert run('SELECT 1 AS x FROM "#" WHERE params.mode <> 1') is None
    assert run('SELECT 1 AS x FROM "#" WHERE method = \'thing.event.property.post\'') == {"x": 1}
    assert run('SELECT 1 AS x FROM "#" WHERE params.nosuch IS NULL') == {"x": 1}
    assert run('SELECT 1 AS x FROM "#" WHERE params.mode IS NOT NULL AND startswith(method, \'thing.\')') == {"x": 1}
    assert run('SELECT 1 AS x FROM "#" WHERE endswith(method, \'get\')') is None


@pytest.mark.parametrize(("statement", "payload", "reason"), [
    ('SELECT params.nosuch FROM "#"', POST, "the payload has no params.nosuch"),
    ('SELECT params.tags[5] AS t FROM "#"', POST, "the payload has no params.tags[5]"),
    ('SELECT 1 AS x FROM "#" WHERE params.temperature > \'hot\'', POST, "> cannot compare a number with a string"),
    ("SELECT params.mode + 'a' AS x FROM \"#\"", POST, "+ needs a number, not a string"),
    ('SELECT 1 / 0 AS x FROM "#"', POST, "/ by zero"),
    ('SELECT 1 AS x FROM "#" WHERE params.mode', POST, "WHERE needs a boolean, not a number"),
    ('SELECT * FROM "#"', [1, 2], "SELECT * needs a JSON object payload, not an array"),
    ('SELECT topic(9) AS t FROM "#"', POST, "topic() has no level 9"),
    ("SELECT concat(params, 'x') AS t FROM \"#\"", POST, "concat() takes strings and numbers, not an object"),
])
def test_a_message_the_statement_cannot_evaluate_is_refused_with_the_reason(
        statement: str, payload: object, reason: str) -> None:
    with pytest.raises(RuleEvalError) as caught:
        run(statement, payload)
    assert str(caught.value) == reason


@pytest.mark.parametrize(("statement", "message"), [
    ('SELECT FROM "a"', "unexpected FROM at line 1, column 8"),
    ('SELECT a + 1 FROM "x"', "an expression in SELECT needs a name: add AS <name> at line 1, column 8"),
    ('SELECT nosuch(a) AS b FROM "x"', "unknown function nosuch() (known: abs, ceil, concat, deviceId, deviceName, "
                                       "endswith, floor, lower, messageId, productKey, round, startswith, "
                                       "timestamp, topic, upper) at line 1, column 8"),
    ('SELECT a FROM "x/#/y"', "FROM: topic filter 'x/#/y': + must be a whole level, # a whole last level "
                              "at line 1, column 15"),
    ('SELECT a,\n b FROM "x" WHERE', "the statement ends too early at line 2, column 18"),
    ("SELECT a FROM x", "unexpected x at line 1, column 15"),
    ('SELECT a ; FROM "x"', "unexpected character ';' at line 1, column 10"),
    ('SELECT abs(1, 2) AS a FROM "x"', "abs() takes 1 argument(s), not 2 at line 1, column 8"),
    ('SELECT a, b.a FROM "x"', "SELECT names a twice"),
    ('SELECT a AS select FROM "x"', "unexpected select at line 1, column 13"),
])
def test_a_statement_that_does_not_compile_says_what_and_where(statement: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_statement(statement)
    assert str(caught.value) == message


def test_statements_are_limited_in_length() -> None:
    padded = 'SELECT a FROM "#"' + " " * (STATEMENT_MAX - 17)
    assert compile_statement(padded).evaluate({"a": 1}, CTX) == {"a": 1}
    with pytest.raises(RuleSyntaxError, match=f"at most {STATEMENT_MAX} characters"):
        compile_statement(padded + " ")
