"""The store: SDK errors become domain errors in one place, and the Cosmos adapter against the emulator."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.cosmos.exceptions import CosmosHttpResponseError

from core.bootstrap import Runtime
from core.errors import ConcurrencyConflict, DuplicateId, PayloadTooLarge, ServiceUnavailable
from core.store import KeyClaim, ensure_containers, make_cosmos_client, translate_cosmos_errors


def _cosmos_error(status: int, **headers: str) -> CosmosHttpResponseError:
    error = CosmosHttpResponseError(status_code=status, message=f"status {status}")
    error.headers = headers
    return error


def test_throttling_becomes_503_with_the_servers_retry_after() -> None:
    with pytest.raises(ServiceUnavailable) as raised, translate_cosmos_errors():
        raise _cosmos_error(429, **{"x-ms-retry-after-ms": "2500"})
    assert raised.value.retry_after == 3


@pytest.mark.parametrize("status", [408, 503])
def test_timeouts_and_outages_become_503(status: int) -> None:
    with pytest.raises(ServiceUnavailable), translate_cosmos_errors():
        raise _cosmos_error(status)


def test_an_unreachable_account_becomes_503() -> None:
    with pytest.raises(ServiceUnavailable), translate_cosmos_errors():
        raise ServiceRequestError("connection refused")


def test_a_lost_etag_race_is_a_concurrency_conflict() -> None:
    with pytest.raises(ConcurrencyConflict), translate_cosmos_errors():
        raise _cosmos_error(412)


def test_a_conflict_becomes_the_callers_domain_error() -> None:
    with pytest.raises(DuplicateId), translate_cosmos_errors(on_conflict=DuplicateId("taken")):
        raise _cosmos_error(409)


def test_an_oversized_document_is_refused_as_too_large() -> None:
    with pytest.raises(PayloadTooLarge), translate_cosmos_errors():
        raise _cosmos_error(413)


def test_anything_else_is_not_translated() -> None:
    with pytest.raises(CosmosHttpResponseError), translate_cosmos_errors():
        raise _cosmos_error(400)


class TestKeyClaims:
    def test_the_first_claim_wins_and_later_ones_see_it(self, runtime: Runtime) -> None:
        key = uuid.uuid4().hex * 2
        first = KeyClaim(key=key, body_hash="a", assignment_id="first")
        assert runtime.store.claim_key(first) is None
        earlier = runtime.store.claim_key(KeyClaim(key=key, body_hash="b", assignment_id="second"))
        assert earlier == first
        assert runtime.store.read_key_claim(first) == first

    def test_a_claim_cannot_collide_with_an_assignment_id(self) -> None:
        claim = KeyClaim(key="0" * 64, body_hash="a", assignment_id="x")
        assert len(claim.document_id) > 64


def test_creating_the_containers_is_idempotent(runtime: Runtime) -> None:
    client = make_cosmos_client(runtime.settings.cosmos_endpoint, runtime.settings.cosmos_key)
    names = runtime.container_names
    ensure_containers(client, names)
    database = ensure_containers(client, names)
    assert {c["id"] for c in database.list_containers()} >= {names.assignments, names.users, names.leases}
    assert database.get_container_client(names.assignments).read()["partitionKey"]["paths"] == ["/pk"]
