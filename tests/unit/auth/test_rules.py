"""Rules decide by priority, then deny before grant, first match wins, default deny."""

from __future__ import annotations

import pytest

from micro.auth import Access, Account, Decision, Resource, Rule, decide, matches, sort_rules

GRANTED, UNAUTHENTICATED, FORBIDDEN = (
    Decision.GRANTED,
    Decision.UNAUTHENTICATED,
    Decision.FORBIDDEN,
)

ANON = None
ANY = Account("any")
ADMIN = Account("root", scopes=("admin",))
READER = Account("reader", scopes=("read",))

RULES = [
    Rule("public-health", "", Resource("service", "*", "Health.*"), priority=100),
    Rule("admins", "admin", Resource("*", "*", "*"), priority=50),
    Rule("no-delete", "*", Resource("service", "store", "Store.Delete"), Access.DENY, 40),
    Rule("readers", "read", Resource("service", "store", "Store.Read*"), priority=10),
    Rule("all-store", "*", Resource("service", "store", "*"), priority=0),
    Rule("users-prefix", "*", Resource("service", "user*", "Users.Get"), priority=0),
    Rule("tie-deny", "*", Resource("service", "tie", "*"), Access.DENY, 5),
    Rule("tie-grant", "*", Resource("service", "tie", "*"), Access.GRANT, 5),
]

TABLE = [
    # account, service, endpoint, decision
    (ANON, "any", "Health.Check", GRANTED),  # public
    (ANY, "any", "Health.Check", GRANTED),
    (ANON, "store", "Store.Read", UNAUTHENTICATED),  # nothing public matches
    (ANY, "store", "Store.Read", GRANTED),  # all-store
    (ANY, "store", "Store.Delete", FORBIDDEN),  # deny beats the lower grant
    (ADMIN, "store", "Store.Delete", GRANTED),  # higher priority grant wins
    (READER, "store", "Store.ReadMany", GRANTED),  # prefix endpoint
    (READER, "store", "Store.Delete", FORBIDDEN),
    (ANY, "users", "Users.Get", GRANTED),  # prefix name
    (ANY, "users", "Users.Put", FORBIDDEN),  # default deny
    (ANON, "users", "Users.Get", UNAUTHENTICATED),
    (ANY, "tie", "Tie.Call", FORBIDDEN),  # equal priority: deny first
    (ADMIN, "tie", "Tie.Call", GRANTED),
    (ANY, "other", "Other.Call", FORBIDDEN),  # no rule at all
    (ANON, "other", "Other.Call", UNAUTHENTICATED),
]


@pytest.mark.parametrize(("account", "service", "endpoint", "expected"), TABLE)
def test_decision_table(
    account: Account | None, service: str, endpoint: str, expected: Decision
) -> None:
    rules = sort_rules(RULES)
    assert decide(rules, account, Resource("service", service, endpoint)) is expected


def test_the_order_of_rules_given_does_not_matter() -> None:
    forward = sort_rules(RULES)
    backward = sort_rules(reversed(RULES))
    assert [r.id for r in forward] == [r.id for r in backward]
    assert forward[0].id == "public-health"
    assert [r.id for r in forward].index("tie-deny") < [r.id for r in forward].index("tie-grant")


def test_no_rules_denies_everyone() -> None:
    assert decide([], ANON, Resource()) is UNAUTHENTICATED
    assert decide([], ADMIN, Resource()) is FORBIDDEN


def test_a_deny_that_does_not_admit_the_caller_is_skipped() -> None:
    rules = sort_rules(
        [
            Rule("deny-readers", "read", Resource(), Access.DENY, 10),
            Rule("grant-all", "*", Resource(), Access.GRANT, 0),
        ]
    )
    assert decide(rules, READER, Resource("service", "x", "X.Y")) is FORBIDDEN
    assert decide(rules, ANY, Resource("service", "x", "X.Y")) is GRANTED


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("Greeter.*", "Greeter.Hello", True),
        ("Greeter.*", "Greeter", False),
        ("Greeter.*", "GreeterX.Hello", False),
        ("api/*", "api/v1/x", True),
        ("exact", "exact", True),
        ("exact", "exactly", False),
        ("", "", True),
        ("", "x", False),
    ],
)
def test_wildcards(pattern: str, value: str, expected: bool) -> None:
    assert matches(pattern, value) is expected


def test_rules_accept_strings_and_dicts_from_configuration() -> None:
    rule = Rule("r", "*", {"type": "service", "name": "a", "endpoint": "*"}, "deny")  # type: ignore[arg-type]
    assert rule.access is Access.DENY
    assert rule.resource == Resource("service", "a", "*")
    with pytest.raises(ValueError):
        Rule("r", "*", Resource(), "maybe")  # type: ignore[arg-type]
