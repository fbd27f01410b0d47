"""The patched local Cosmos DB server, driven through the real azure-cosmos SDK.

Each test pins one behaviour our code relies on and the unpatched @vercel/cosmosdb-server got wrong
(see shared FACTS.md): 404s, substatus 1003 for a missing container or database, quoted ETags, id rules, the 2 MB
item limit, atomic batches, partition-scoped queries, incremental change feed, TTL, keep-alive.
"""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import time
import uuid
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import pytest
import requests
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import (
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceNotFoundError,
)
from azure.cosmos.http_constants import SubStatusCodes

from localhost import services
from tests.support.services import RunningService, make_cosmos_client, start_cosmos

Item = dict[str, Any]


def ids(items: list[Item]) -> list[str]:
    return [str(item["id"]) for item in items]


def read_changes(container: ContainerProxy, **kwargs: Any) -> tuple[list[Item], str]:
    """Drain the change feed; return the changes and the continuation to resume from later.

    The continuation is taken from the client's last response headers: after the final (304) request the SDK
    stores its updated base64 continuation there, also when no page was returned (where the pager's
    `continuation_token` stays None).
    """
    changes: list[Item] = []
    for page in container.query_items_change_feed(**kwargs).by_page():
        changes.extend(page)
    continuation = container.client_connection.last_response_headers["etag"]
    return changes, str(continuation)


# ---------------------------------------------------------------- point operations


def test_reading_a_missing_item_raises_not_found(container: ContainerProxy) -> None:
    with pytest.raises(CosmosResourceNotFoundError) as error:
        container.read_item("missing", partition_key="p")
    assert error.value.status_code == 404
    assert error.value.sub_status is None  # not 1003: the container is there, the item is not


WRITES_TO_A_MISSING_ITEM: dict[str, Callable[[ContainerProxy], object]] = {
    "replace": lambda c: c.replace_item("missing", {"id": "missing", "pk": "p"}),
    "delete": lambda c: c.delete_item("missing", partition_key="p"),
    "patch": lambda c: c.patch_item("missing", "p", [{"op": "set", "path": "/a", "value": 1}]),
}


@pytest.mark.parametrize("operation", sorted(WRITES_TO_A_MISSING_ITEM))
def test_writing_a_missing_item_raises_not_found(container: ContainerProxy, operation: str) -> None:
    write = WRITES_TO_A_MISSING_ITEM[operation]
    with pytest.raises(CosmosResourceNotFoundError) as error:
        write(container)
    assert error.value.sub_status is None


def test_an_item_is_found_only_in_its_own_partition(container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p1"})
    assert container.read_item("a", partition_key="p1")["pk"] == "p1"
    with pytest.raises(CosmosResourceNotFoundError):
        container.read_item("a", partition_key="p2")


def test_every_write_changes_the_etag_and_sets_ts_in_seconds(container: ContainerProxy) -> None:
    created = container.create_item({"id": "a", "pk": "p", "n": 1})
    replaced = container.replace_item("a", {"id": "a", "pk": "p", "n": 2})
    patched = container.patch_item("a", "p", [{"op": "incr", "path": "/n", "value": 1}])
    assert len({created["_etag"], replaced["_etag"], patched["_etag"]}) == 3
    assert abs(patched["_ts"] - time.time()) < 5


def test_patch_filter_predicate_keeps_the_case_of_string_literals(container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p", "status": "Active"})
    patched = container.patch_item(
        "a", "p", [{"op": "set", "path": "/seen", "value": True}], filter_predicate="FROM c WHERE c.status = 'Active'"
    )
    assert patched["seen"] is True
    with pytest.raises(CosmosHttpResponseError) as error:
        container.patch_item(
            "a", "p", [{"op": "set", "path": "/seen", "value": False}], filter_predicate="FROM c WHERE c.status = 'x'"
        )
    assert error.value.status_code == 412


# ---------------------------------------------------------------- entity tags


def is_quoted(etag: object) -> bool:
    """Cosmos's form: the JSON string itself holds the quotes, e.g. '"00000000-0000-0000-a1b2-c3d4e5f60000"'."""
    return isinstance(etag, str) and len(etag) > 2 and etag.startswith('"') and etag.endswith('"')


def last_etag_header(container: ContainerProxy) -> str:
    return str(container.client_connection.last_response_headers["etag"])


def test_etags_are_quoted_in_bodies_and_headers_and_change_on_every_write(container: ContainerProxy) -> None:
    written = [container.create_item({"id": "a", "pk": "p", "n": 1})]
    headers = [last_etag_header(container)]
    written.append(container.upsert_item({"id": "a", "pk": "p", "n": 2}))
    headers.append(last_etag_header(container))
    written.append(container.replace_item("a", {"id": "a", "pk": "p", "n": 3}))
    headers.append(last_etag_header(container))
    written.append(container.patch_item("a", "p", [{"op": "incr", "path": "/n", "value": 1}]))
    headers.append(last_etag_header(container))
    read = container.read_item("a", partition_key="p")

    etags = [item["_etag"] for item in written]
    assert all(is_quoted(etag) for etag in etags)
    assert headers == etags
    assert len(set(etags)) == len(etags)
    assert read["_etag"] == last_etag_header(container) == etags[-1]


CONDITIONAL_WRITES: dict[str, Callable[[ContainerProxy, str], object]] = {
    "replace": lambda c, etag: c.replace_item(
        "a", {"id": "a", "pk": "p", "n": 9}, etag=etag, match_condition=MatchConditions.IfNotModified
    ),
    "upsert": lambda c, etag: c.upsert_item(
        {"id": "a", "pk": "p", "n": 9}, etag=etag, match_condition=MatchConditions.IfNotModified
    ),
    "patch": lambda c, etag: c.patch_item(
        "a", "p", [{"op": "set", "path": "/n", "value": 9}], etag=etag, match_condition=MatchConditions.IfNotModified
    ),
    "delete": lambda c, etag: c.delete_item("a", "p", etag=etag, match_condition=MatchConditions.IfNotModified),
}


@pytest.mark.parametrize("operation", sorted(CONDITIONAL_WRITES))
def test_if_match_takes_the_quoted_etag_as_read_and_refuses_a_stale_one(
    container: ContainerProxy, operation: str
) -> None:
    stale = container.create_item({"id": "a", "pk": "p", "n": 0})["_etag"]
    container.upsert_item({"id": "a", "pk": "p", "n": 1})
    current = container.read_item("a", partition_key="p")["_etag"]
    write = CONDITIONAL_WRITES[operation]

    with pytest.raises(CosmosHttpResponseError) as error:
        write(container, stale)
    assert error.value.status_code == 412
    assert container.read_item("a", partition_key="p")["_etag"] == current

    write(container, current)
    remaining: list[Any] = list(container.query_items("SELECT VALUE c.n FROM c", partition_key="p"))
    assert remaining == ([] if operation == "delete" else [9])


def test_if_match_star_passes_for_any_current_version(container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p", "n": 0})
    replaced = container.replace_item("a", {"id": "a", "pk": "p", "n": 1}, match_condition=MatchConditions.IfPresent)
    assert replaced["n"] == 1


def test_batch_preconditions_compare_the_quoted_etag(container: ContainerProxy) -> None:
    stale = container.create_item({"id": "a", "pk": "p", "n": 0})["_etag"]
    current = container.upsert_item({"id": "a", "pk": "p", "n": 1})["_etag"]

    with pytest.raises(CosmosBatchOperationError) as error:
        container.execute_item_batch(
            [("replace", ("a", {"id": "a", "pk": "p", "n": 2}), {"if_match_etag": stale})], partition_key="p"
        )
    assert error.value.status_code == 412

    results = container.execute_item_batch(
        [
            ("replace", ("a", {"id": "a", "pk": "p", "n": 2}), {"if_match_etag": current}),
            ("upsert", ({"id": "b", "pk": "p"},)),
        ],
        partition_key="p",
    )
    assert [r["statusCode"] for r in results] == [200, 201]
    assert all(is_quoted(r["eTag"]) and r["eTag"] == r["resourceBody"]["_etag"] for r in results)
    assert results[0]["eTag"] != current

    with pytest.raises(CosmosBatchOperationError) as error:
        container.execute_item_batch(
            [("upsert", ({"id": "b", "pk": "p"},), {"if_none_match_etag": results[1]["eTag"]})], partition_key="p"
        )
    assert error.value.status_code == 412


# ---------------------------------------------------------------- ids

WRITES_OF_AN_ID: dict[str, Callable[[ContainerProxy, str], object]] = {
    "create": lambda c, item_id: c.create_item({"id": item_id, "pk": "p"}),
    "upsert": lambda c, item_id: c.upsert_item({"id": item_id, "pk": "p"}),
    "replace": lambda c, item_id: c.replace_item(item_id, {"id": item_id, "pk": "p"}),
    "batch create": lambda c, item_id: c.execute_item_batch(
        [("create", ({"id": item_id, "pk": "p"},))], partition_key="p"
    ),
    "batch upsert": lambda c, item_id: c.execute_item_batch(
        [("create", ({"id": "ok", "pk": "p"},)), ("upsert", ({"id": item_id, "pk": "p"},))], partition_key="p"
    ),
    "batch replace": lambda c, item_id: c.execute_item_batch(
        [("replace", (item_id, {"id": item_id, "pk": "p"}))], partition_key="p"
    ),
}


def refusal_of(write: Callable[[], object]) -> tuple[int, str]:
    """The status and message a write fails with; a batch reports its failing operation's."""
    try:
        write()
    except CosmosBatchOperationError as error:  # not a CosmosHttpResponseError
        failed = error.operation_responses[error.error_index]
        return error.status_code or 0, str(failed.get("message", ""))
    except CosmosHttpResponseError as error:
        return error.status_code or 0, str(error.message)
    raise AssertionError("the write succeeded")


@pytest.mark.parametrize("operation", sorted(WRITES_OF_AN_ID))
def test_an_id_over_255_characters_is_refused_with_400(container: ContainerProxy, operation: str) -> None:
    status, message = refusal_of(lambda: WRITES_OF_AN_ID[operation](container, "x" * 256))
    assert status == 400
    assert "is invalid" in message
    assert list(container.read_all_items()) == []


def test_an_id_of_255_characters_is_accepted_and_counted_in_characters(container: ContainerProxy) -> None:
    longest = "\U0001f600" * 255  # 255 characters, 1020 UTF-8 bytes, 510 UTF-16 code units
    container.create_item({"id": longest, "pk": "p"})
    container.create_item({"id": "x" * 255, "pk": "p"})

    with pytest.raises(CosmosHttpResponseError) as error:
        container.create_item({"id": "\U0001f600" * 256, "pk": "p"})

    assert error.value.status_code == 400
    assert "is invalid" in str(error.value.message)
    assert sorted(ids(list(container.read_all_items()))) == sorted([longest, "x" * 255])


def rest_write(cosmos: RunningService, container: ContainerProxy, operation: str, item: Item) -> tuple[int, str]:
    """Create, upsert or replace through the REST API, signed with the account key as every client signs it: the
    status and message of the answer. The Python SDK refuses some ids itself before it sends them; other
    clients send them, and the server must refuse them as Cosmos does."""
    link = container.container_link
    verb, resource_link, url = "POST", link, f"{cosmos.endpoint.rstrip('/')}/{link}/docs"
    if operation == "replace":
        verb, resource_link = "PUT", f"{link}/docs/{item['id']}"
        url = f"{url}/{quote(item['id'], safe='')}"
    date = formatdate(usegmt=True)
    signed = f"{verb.lower()}\ndocs\n{resource_link}\n{date.lower()}\n\n"
    signature = base64.b64encode(hmac.digest(base64.b64decode(cosmos.key), signed.encode(), "sha256")).decode()
    headers = {
        "authorization": quote(f"type=master&ver=1.0&sig={signature}", safe=""),
        "x-ms-date": date,
        "x-ms-version": "2018-12-31",
        "x-ms-documentdb-partitionkey": json.dumps([item["pk"]]),
        "content-type": "application/json",
    }
    if operation == "upsert":
        headers["x-ms-documentdb-is-upsert"] = "True"
    response = requests.request(verb, url, data=json.dumps(item), headers=headers, timeout=10)
    return response.status_code, str(response.json().get("message", ""))


@pytest.mark.parametrize("character", ["/", "\\", "?", "#"])
@pytest.mark.parametrize("operation", sorted(WRITES_OF_AN_ID))
def test_an_id_with_a_reserved_character_is_refused_with_400(
    cosmos_service: RunningService, container: ContainerProxy, operation: str, character: str
) -> None:
    item_id = f"a{character}b"
    if operation.startswith("batch "):  # the SDK checks ids before create, upsert and replace, not in a batch
        status, message = refusal_of(lambda: WRITES_OF_AN_ID[operation](container, item_id))
    else:
        status, message = rest_write(cosmos_service, container, operation, {"id": item_id, "pk": "p"})

    assert status == 400
    assert "is invalid" in message
    assert list(container.read_all_items()) == []


# ---------------------------------------------------------------- item size

MAX_ITEM_BYTES = 2 * 1024 * 1024 - 1  # Cosmos's bound: the item as written, without the server's system properties


def item_of_size(item_id: str, size: int) -> Item:
    """An item whose JSON, as the SDK sends it (compact, UTF-8), is exactly `size` bytes."""
    item: Item = {"id": item_id, "pk": "p", "pad": ""}
    item["pad"] = "x" * (size - len(json.dumps(item, separators=(",", ":")).encode()))
    return item


def test_an_item_of_exactly_the_maximum_size_is_stored(container: ContainerProxy) -> None:
    container.create_item(item_of_size("a", MAX_ITEM_BYTES))
    container.replace_item("a", item_of_size("a", MAX_ITEM_BYTES))
    assert len(container.read_item("a", partition_key="p")["pad"]) == len(item_of_size("a", MAX_ITEM_BYTES)["pad"])


OVERSIZED_WRITES: dict[str, Callable[[ContainerProxy], object]] = {
    "create": lambda c: c.create_item(item_of_size("b", MAX_ITEM_BYTES + 1)),
    "upsert": lambda c: c.upsert_item(item_of_size("a", MAX_ITEM_BYTES + 1)),
    "replace": lambda c: c.replace_item("a", item_of_size("a", MAX_ITEM_BYTES + 1)),
    # the patch itself is small; the item it would make is one byte over
    "patch": lambda c: c.patch_item(
        "a", "p", [{"op": "set", "path": "/pad", "value": item_of_size("a", MAX_ITEM_BYTES + 1)["pad"]}]
    ),
}


@pytest.mark.parametrize("operation", sorted(OVERSIZED_WRITES))
def test_an_item_over_the_maximum_size_is_refused_with_413_and_nothing_is_written(
    container: ContainerProxy, operation: str
) -> None:
    before = container.create_item({"id": "a", "pk": "p", "pad": ""})

    status, message = refusal_of(lambda: OVERSIZED_WRITES[operation](container))

    assert status == 413
    assert "Request size is too large" in message
    assert list(container.read_all_items()) == [before]


OVERSIZED_BATCH_OPERATIONS: dict[str, tuple[Any, ...]] = {
    "create": ("create", (item_of_size("c", MAX_ITEM_BYTES + 1),)),
    "upsert": ("upsert", (item_of_size("a", MAX_ITEM_BYTES + 1),)),
    "replace": ("replace", ("a", item_of_size("a", MAX_ITEM_BYTES + 1))),
    "patch": ("patch", ("a", [{"op": "set", "path": "/pad", "value": item_of_size("a", MAX_ITEM_BYTES + 1)["pad"]}])),
}


@pytest.mark.parametrize("operation", sorted(OVERSIZED_BATCH_OPERATIONS))
def test_an_oversized_item_fails_its_batch_operation_with_413_and_the_batch_is_not_applied(
    container: ContainerProxy, operation: str
) -> None:
    before = container.create_item({"id": "a", "pk": "p", "pad": ""})

    with pytest.raises(CosmosBatchOperationError) as error:
        container.execute_item_batch(
            [("create", ({"id": "b", "pk": "p"},)), OVERSIZED_BATCH_OPERATIONS[operation], ("delete", ("a",))],
            partition_key="p",
        )

    assert (error.value.error_index, error.value.status_code) == (1, 413)
    assert [r["statusCode"] for r in error.value.operation_responses] == [424, 413, 424]
    assert list(container.read_all_items()) == [before]


def test_a_batch_holds_one_maximal_item_but_its_whole_body_is_limited_too(container: ContainerProxy) -> None:
    # maxBatchRequestBodySize (2,202,010 bytes) leaves room for one maximal item; a bigger body is refused whole,
    # as a plain 413 response rather than a failed operation.
    results = container.execute_item_batch(
        [("create", (item_of_size("a", MAX_ITEM_BYTES),)), ("create", ({"id": "b", "pk": "p"},))], partition_key="p"
    )
    assert [r["statusCode"] for r in results] == [201, 201]

    large = item_of_size("c", 1_200_000)  # two of them: under the item limit each, over the body limit together
    with pytest.raises(CosmosHttpResponseError) as error:
        container.execute_item_batch(
            [("create", (large,)), ("create", ({**large, "id": "d"},)), ("delete", ("a",))], partition_key="p"
        )

    assert error.value.status_code == 413
    assert sorted(ids(list(container.read_all_items()))) == ["a", "b"]


# ---------------------------------------------------------------- transactional batch


def test_a_batch_of_every_operation_kind_succeeds(container: ContainerProxy) -> None:
    old = container.create_item({"id": "old", "pk": "p", "n": 1})
    container.create_item({"id": "gone", "pk": "p"})
    container.create_item({"id": "patched", "pk": "p", "n": 1})

    results = container.execute_item_batch(
        [
            ("create", ({"id": "new", "pk": "p"},)),
            ("replace", ("old", {"id": "old", "pk": "p", "n": 2}), {"if_match_etag": old["_etag"]}),
            ("delete", ("gone",)),
            ("upsert", ({"id": "upserted", "pk": "p"},)),
            ("patch", ("patched", [{"op": "incr", "path": "/n", "value": 5}])),
            ("read", ("old",)),
        ],
        partition_key="p",
    )

    assert [r["statusCode"] for r in results] == [201, 200, 204, 201, 200, 200]
    assert results[1]["resourceBody"]["n"] == 2
    assert results[1]["eTag"] == results[1]["resourceBody"]["_etag"] != old["_etag"]
    assert results[4]["resourceBody"]["n"] == 6
    assert results[5]["resourceBody"]["_etag"] == results[1]["eTag"]
    assert all("_ts" in r["resourceBody"] for i, r in enumerate(results) if i != 2)
    assert sorted(ids(list(container.read_all_items()))) == ["new", "old", "patched", "upserted"]


def test_a_failing_batch_applies_nothing_and_reports_the_failing_operation(container: ContainerProxy) -> None:
    existing = container.create_item({"id": "existing", "pk": "p", "n": 1})

    with pytest.raises(CosmosBatchOperationError) as error:
        container.execute_item_batch(
            [
                ("create", ({"id": "first", "pk": "p"},)),
                ("create", ({"id": "existing", "pk": "p"},)),  # conflicts
                ("upsert", ({"id": "existing", "pk": "p", "n": 99},)),
            ],
            partition_key="p",
        )

    assert error.value.error_index == 1
    assert error.value.status_code == 409
    assert [r["statusCode"] for r in error.value.operation_responses] == [424, 409, 424]
    with pytest.raises(CosmosResourceNotFoundError):
        container.read_item("first", partition_key="p")
    assert container.read_item("existing", partition_key="p")["_etag"] == existing["_etag"]


@pytest.mark.parametrize(
    ("failing_operation", "status"),
    [
        (("replace", ("item", {"id": "item", "pk": "p"}), {"if_match_etag": '"stale"'}), 412),
        (("delete", ("missing",)), 404),
        (("create", ({"id": "other-partition", "pk": "q"},)), 400),
    ],
)
def test_a_batch_is_rolled_back_after_any_failure(
    container: ContainerProxy, failing_operation: tuple[Any, ...], status: int
) -> None:
    item = container.create_item({"id": "item", "pk": "p", "n": 1})

    with pytest.raises(CosmosBatchOperationError) as error:
        container.execute_item_batch(
            [
                ("upsert", ({"id": "upserted", "pk": "p"},)),
                ("patch", ("item", [{"op": "set", "path": "/n", "value": 2}])),
                ("delete", ("item",)),
                ("create", ({"id": "item", "pk": "p", "n": 3},)),
                failing_operation,
            ],
            partition_key="p",
        )

    assert (error.value.error_index, error.value.status_code) == (4, status)
    assert ids(list(container.read_all_items())) == ["item"]
    assert container.read_item("item", partition_key="p")["_etag"] == item["_etag"]
    assert read_changes(container, start_time="Beginning")[0] == [{**item, "_lsn": 1}]


# ---------------------------------------------------------------- queries


def test_a_query_with_a_partition_key_returns_only_that_partition(container: ContainerProxy) -> None:
    for index, pk in enumerate(["p1", "p2", "p1", "p3"]):
        container.create_item({"id": f"i{index}", "pk": pk, "n": index})

    scoped = container.query_items("SELECT * FROM c ORDER BY c.n", partition_key="p1")
    everything: list[Any] = list(container.query_items("SELECT VALUE c.id FROM c", enable_cross_partition_query=True))
    count: list[Any] = list(container.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="p2"))

    assert ids(list(scoped)) == ["i0", "i2"]
    assert sorted(everything) == ["i0", "i1", "i2", "i3"]
    assert count == [1]


# ---------------------------------------------------------------- change feed


def test_change_feed_from_the_beginning_is_in_modification_order_with_latest_versions(
    container: ContainerProxy,
) -> None:
    for item_id in ["a", "b", "c"]:
        container.create_item({"id": item_id, "pk": "p", "v": 1})
    container.upsert_item({"id": "a", "pk": "p", "v": 2})
    container.create_item({"id": "deleted", "pk": "p"})
    container.delete_item("deleted", partition_key="p")

    changes, _ = read_changes(container, start_time="Beginning")

    assert ids(changes) == ["b", "c", "a"]
    assert changes[-1]["v"] == 2
    lsns = [change["_lsn"] for change in changes]
    assert lsns == sorted(lsns)


def test_change_feed_continuation_returns_only_newer_changes(container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p"})
    container.create_item({"id": "b", "pk": "p"})
    first, continuation = read_changes(container, start_time="Beginning")
    assert ids(first) == ["a", "b"]

    assert read_changes(container, continuation=continuation)[0] == []

    container.upsert_item({"id": "b", "pk": "p", "v": 2})
    container.create_item({"id": "c", "pk": "p"})
    container.upsert_item({"id": "b", "pk": "p", "v": 3})
    second, continuation = read_changes(container, continuation=continuation)

    assert ids(second) == ["c", "b"]
    assert second[1]["v"] == 3
    assert read_changes(container, continuation=continuation)[0] == []


def test_a_persisted_continuation_resumes_in_a_fresh_client(
    cosmos_service: RunningService, container: ContainerProxy
) -> None:
    container.create_item({"id": "before", "pk": "p"})
    _, continuation = read_changes(container, start_time="Beginning")
    container.create_item({"id": "after", "pk": "p"})

    fresh = make_cosmos_client(cosmos_service.endpoint, cosmos_service.key)
    resumed = fresh.get_database_client(_database_id(container)).get_container_client(container.id)
    pages = resumed.query_items_change_feed(continuation=continuation).by_page()

    assert [ids(list(page)) for page in pages] == [["after"]]


def _database_id(container: ContainerProxy) -> str:
    # container_link is "dbs/<database id>/colls/<container id>"
    return str(container.container_link.split("/")[1])


def test_change_feed_pages_honour_max_item_count(container: ContainerProxy) -> None:
    for index in range(5):
        container.create_item({"id": f"i{index}", "pk": "p"})

    pager = container.query_items_change_feed(start_time="Beginning", max_item_count=2).by_page()

    assert [ids(list(page)) for page in pager] == [["i0", "i1"], ["i2", "i3"], ["i4"]]


def test_change_feed_pages_resume_from_the_pager_continuation_token(container: ContainerProxy) -> None:
    for index in range(3):
        container.create_item({"id": f"i{index}", "pk": "p"})
    pager = container.query_items_change_feed(start_time="Beginning", max_item_count=2).by_page()
    assert ids(list(next(pager))) == ["i0", "i1"]
    token = cast(Any, pager).continuation_token  # typed as a plain Iterator, but it is azure.core's PageIterator
    assert token is not None

    rest = container.query_items_change_feed(continuation=token).by_page()

    assert [ids(list(page)) for page in rest] == [["i2"]]


def test_change_feed_from_now_yields_only_later_changes(container: ContainerProxy) -> None:
    container.create_item({"id": "earlier", "pk": "p"})
    changes, continuation = read_changes(container, start_time="Now")
    assert changes == []

    container.create_item({"id": "later", "pk": "p"})

    assert ids(read_changes(container, continuation=continuation)[0]) == ["later"]


@pytest.mark.parametrize("pk", ["p2", 7, 2.5, True])
def test_change_feed_can_be_scoped_to_a_partition(container: ContainerProxy, pk: object) -> None:
    container.create_item({"id": "other", "pk": "p1"})
    container.create_item({"id": "mine", "pk": pk})
    container.create_item({"id": "other-2", "pk": "p3"})

    changes, continuation = read_changes(container, start_time="Beginning", partition_key=pk)
    assert ids(changes) == ["mine"]

    container.create_item({"id": "other-3", "pk": "p1"})
    container.upsert_item({"id": "mine", "pk": pk, "v": 2})
    assert ids(read_changes(container, continuation=continuation)[0]) == ["mine"]


# ---------------------------------------------------------------- TTL


def test_expired_items_vanish_from_reads_queries_and_the_change_feed(cosmos_database: DatabaseProxy) -> None:
    per_item = cosmos_database.create_container(
        f"ttl-{uuid.uuid4().hex[:8]}", partition_key=PartitionKey("/pk"), default_ttl=-1
    )
    by_default = cosmos_database.create_container(
        f"ttl-{uuid.uuid4().hex[:8]}", partition_key=PartitionKey("/pk"), default_ttl=1
    )
    per_item.create_item({"id": "short", "pk": "p", "ttl": 1})
    per_item.create_item({"id": "forever", "pk": "p"})
    by_default.create_item({"id": "short", "pk": "p"})
    by_default.create_item({"id": "forever", "pk": "p", "ttl": -1})
    assert per_item.read_item("short", partition_key="p")["id"] == "short"

    time.sleep(1.3)

    for container in (per_item, by_default):
        with pytest.raises(CosmosResourceNotFoundError):
            container.read_item("short", partition_key="p")
        assert ids(list(container.query_items("SELECT * FROM c", partition_key="p"))) == ["forever"]
        assert ids(read_changes(container, start_time="Beginning")[0]) == ["forever"]
        container.create_item({"id": "short", "pk": "p", "ttl": 60})  # the id is free again


def test_without_container_ttl_item_ttl_is_ignored(container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p", "ttl": 1})
    time.sleep(1.1)
    assert container.read_item("a", partition_key="p")["id"] == "a"


# ---------------------------------------------------------------- missing database or container

OWNER_RESOURCE_NOT_FOUND = SubStatusCodes.OWNER_RESOURCE_NOT_FOUND  # 1003, as Cosmos marks "the container is gone"

OPERATIONS_ON_A_MISSING_OWNER: dict[str, Callable[[ContainerProxy], object]] = {
    "read": lambda c: c.read_item("a", partition_key="p"),
    "create": lambda c: c.create_item({"id": "b", "pk": "p"}),
    "upsert": lambda c: c.upsert_item({"id": "a", "pk": "p"}),
    "replace": lambda c: c.replace_item("a", {"id": "a", "pk": "p"}),
    "patch": lambda c: c.patch_item("a", "p", [{"op": "set", "path": "/n", "value": 1}]),
    "delete": lambda c: c.delete_item("a", partition_key="p"),
    "batch": lambda c: c.execute_item_batch([("create", ({"id": "b", "pk": "p"},))], partition_key="p"),
    "query": lambda c: list(c.query_items("SELECT * FROM c", partition_key="p")),
    "cross-partition query": lambda c: list(c.query_items("SELECT * FROM c", enable_cross_partition_query=True)),
    "read all": lambda c: list(c.read_all_items()),
    "change feed": lambda c: list(c.query_items_change_feed(start_time="Beginning")),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS_ON_A_MISSING_OWNER))
def test_operations_on_a_deleted_container_are_404_with_substatus_1003(
    cosmos_database: DatabaseProxy, container: ContainerProxy, operation: str
) -> None:
    container.create_item({"id": "a", "pk": "p"})  # the client now holds the container's properties, as a service does
    cosmos_database.delete_container(container)

    with pytest.raises(CosmosHttpResponseError) as error:
        OPERATIONS_ON_A_MISSING_OWNER[operation](container)

    assert (error.value.status_code, error.value.sub_status) == (404, OWNER_RESOURCE_NOT_FOUND)


@pytest.mark.parametrize("operation", ["read", "create", "query", "batch"])
def test_operations_in_a_deleted_database_are_404_with_substatus_1003(
    cosmos_client: CosmosClient, operation: str
) -> None:
    database = cosmos_client.create_database(f"gone-{uuid.uuid4().hex[:8]}")
    container = database.create_container("c", partition_key=PartitionKey("/pk"))
    container.create_item({"id": "a", "pk": "p"})
    cosmos_client.delete_database(database)

    with pytest.raises(CosmosHttpResponseError) as error:
        OPERATIONS_ON_A_MISSING_OWNER[operation](container)

    assert (error.value.status_code, error.value.sub_status) == (404, OWNER_RESOURCE_NOT_FOUND)


def test_a_client_that_never_saw_a_deleted_container_gets_a_plain_404_from_reading_it(
    cosmos_service: RunningService, cosmos_database: DatabaseProxy, container: ContainerProxy
) -> None:
    # Before its first item operation the SDK reads the container's properties (GET /dbs/d/colls/c). That read is
    # addressed to the container itself, so a missing container is a plain 404 there, without 1003, as on Cosmos.
    cosmos_database.delete_container(container)
    fresh = make_cosmos_client(cosmos_service.endpoint, cosmos_service.key)
    unseen = fresh.get_database_client(cosmos_database.id).get_container_client(container.id)

    with pytest.raises(CosmosResourceNotFoundError) as error:
        unseen.read_item("a", partition_key="p")

    assert error.value.sub_status is None


# ---------------------------------------------------------------- container management


def test_replacing_a_container_keeps_its_items(cosmos_database: DatabaseProxy, container: ContainerProxy) -> None:
    container.create_item({"id": "a", "pk": "p"})

    cosmos_database.replace_container(container, partition_key=PartitionKey("/pk"), default_ttl=3600)

    assert container.read_item("a", partition_key="p")["id"] == "a"


# ---------------------------------------------------------------- transport


def test_connections_are_kept_alive(cosmos_service: RunningService) -> None:
    address = urlsplit(cosmos_service.endpoint)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=5)
    try:
        local_ports = set()
        for _ in range(20):
            connection.request("GET", "/")
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200
            assert (response.getheader("Connection") or "").lower() != "close"
            assert connection.sock is not None
            local_ports.add(connection.sock.getsockname()[1])
        assert len(local_ports) == 1
    finally:
        connection.close()
    endpoints = [location["databaseAccountEndpoint"] for location in body["writableLocations"]]
    assert endpoints == [cosmos_service.endpoint]


def test_endpoint_discovery_works_over_plain_http(
    cosmos_service: RunningService, cosmos_database: DatabaseProxy
) -> None:
    # The server advertises its own http:// URL as the account's region endpoint, so discovery can stay on.
    client = CosmosClient(cosmos_service.endpoint, credential=cosmos_service.key, enable_endpoint_discovery=True)
    assert cosmos_database.id in [database["id"] for database in client.list_databases()]


# ---------------------------------------------------------------- service helpers


def test_stop_ends_the_server_process() -> None:
    service = start_cosmos()
    service.stop()
    assert service.process.returncode is not None
    assert not service.workdir.exists()


def test_missing_node_modules_fail_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services, "NODE_MODULES", tmp_path / "node_modules")
    with pytest.raises(RuntimeError, match=r"npm ci --prefix emulators"):
        start_cosmos()
    with pytest.raises(RuntimeError, match=r"npm ci --prefix emulators"):
        services.start_azurite()


def test_missing_node_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(RuntimeError, match=r"`node` was not found"):
        start_cosmos()
