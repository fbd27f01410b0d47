"""The txn routes' body (seed 003): `{"params": {...}}`, checked purely, in the contract's order."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import (
    InvalidAssignAttribute,
    InvalidRequest,
    InvalidRequestAttribute,
    SubmitKeyNotSpecified,
    TxnRequestError,
    UserKeyNotSpecified,
)
from core.models import TxnAssignRequest, TxnUnassignRequest
from core.services.txn import parse_assign_request, parse_unassign_request

SEED_BODY = {"params": {"submitKey": "15d071280b92c867f86975b9cd2e8765", "userKey": "378595572a1bd63ff9b5972b7a1c91dd"}}


def test_the_seed_example_parses() -> None:
    assert parse_assign_request(SEED_BODY) == TxnAssignRequest(
        submit_key="15d071280b92c867f86975b9cd2e8765", user_key="378595572a1bd63ff9b5972b7a1c91dd"
    )


def test_unassign_takes_the_submit_key_only() -> None:
    assert parse_unassign_request({"params": {"submitKey": "k1"}}) == TxnUnassignRequest(submit_key="k1")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "params",
        {},
        {"params": None},
        {"params": []},
        {"params": "submitKey=1"},
        {"params": {"submitKey": 1, "userKey": "u"}},
        {"params": {"submitKey": "s", "userKey": ["u"]}},
        {"params": {"submitKey": {"id": "s"}, "userKey": "u"}},
        {"params": {"submitKey": True, "userKey": "u"}},
    ],
)
def test_invalid_request(body: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_assign_request(body)
    assert type(caught.value) is InvalidRequest
    assert caught.value.code == "invalidRequest"


@pytest.mark.parametrize(
    ("body", "error", "code", "message"),
    [
        ({"params": {}, "extra": 1}, InvalidRequestAttribute, "invalidRequestAttribute",
         "Invalid request attribute: extra"),
        ({"params": {"submitKey": "s", "userKey": "u", "x": 1}}, InvalidAssignAttribute, "invalidAssignAttribute",
         "Invalid assign attribute: x"),
        ({"params": {}}, SubmitKeyNotSpecified, "submitKeyNotSpecified", "submitKey not specified"),
        ({"params": {"submitKey": None, "userKey": "u"}}, SubmitKeyNotSpecified, "submitKeyNotSpecified",
         "submitKey not specified"),
        ({"params": {"submitKey": "", "userKey": "u"}}, SubmitKeyNotSpecified, "submitKeyNotSpecified",
         "submitKey not specified"),
        ({"params": {"submitKey": "s"}}, UserKeyNotSpecified, "userKeyNotSpecified", "userKey not specified"),
        ({"params": {"submitKey": "s", "userKey": None}}, UserKeyNotSpecified, "userKeyNotSpecified",
         "userKey not specified"),
        ({"params": {"submitKey": "s", "userKey": ""}}, UserKeyNotSpecified, "userKeyNotSpecified",
         "userKey not specified"),
    ],
)  # fmt: skip
def test_each_seed_error_carries_its_key_and_message(
    body: Any, error: type[TxnRequestError], code: str, message: str
) -> None:
    with pytest.raises(error) as caught:
        parse_assign_request(body)
    assert caught.value.code == code
    assert caught.value.detail == message


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # invalidRequest comes before everything else, even an unknown attribute.
        ({"params": {"submitKey": 1}, "extra": 1}, InvalidRequest),
        ({"params": {"submitKey": 1, "x": 1}}, InvalidRequest),
        ({"extra": 1}, InvalidRequest),
        # invalidRequestAttribute before invalidAssignAttribute and the missing keys.
        ({"params": {"x": 1}, "extra": 1}, InvalidRequestAttribute),
        # invalidAssignAttribute before the missing keys.
        ({"params": {"x": 1}}, InvalidAssignAttribute),
        # submitKey before userKey.
        ({"params": {"submitKey": "", "userKey": ""}}, SubmitKeyNotSpecified),
    ],
)
def test_the_checks_run_in_the_contracts_order(body: Any, error: type[InvalidRequest]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_assign_request(body)
    assert type(caught.value) is error


def test_the_first_unknown_attribute_is_named() -> None:
    with pytest.raises(InvalidRequestAttribute, match=r"^Invalid request attribute: b$"):
        parse_assign_request({"params": {}, "b": 1, "a": 2})


def test_a_whitespace_key_is_specified_and_left_to_the_lookup() -> None:
    assert parse_assign_request({"params": {"submitKey": " ", "userKey": " "}}) == TxnAssignRequest(" ", " ")


class TestUnassign:
    def test_user_key_is_not_an_unassign_attribute(self) -> None:
        with pytest.raises(InvalidAssignAttribute, match=r"^Invalid assign attribute: userKey$"):
            parse_unassign_request({"params": {"submitKey": "s", "userKey": "u"}})

    @pytest.mark.parametrize("params", [{}, {"submitKey": None}, {"submitKey": ""}])
    def test_submit_key_not_specified(self, params: dict[str, Any]) -> None:
        with pytest.raises(SubmitKeyNotSpecified):
            parse_unassign_request({"params": params})

    @pytest.mark.parametrize("body", [{"params": {"submitKey": 7}}, {"params": 1}, []])
    def test_invalid_request(self, body: Any) -> None:
        with pytest.raises(InvalidRequest) as caught:
            parse_unassign_request(body)
        assert type(caught.value) is InvalidRequest
