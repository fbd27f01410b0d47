"""The Cosmos DB adapter of `core.store.ViewStore`: the views container, partitioned by list (`/pk`), so
every list query names its partition and none is cross-partition (except the operators' scan)."""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosHttpResponseError

from core.cosmos.client import SUBSTATUS_OWNER_MISSING, ContainerStore, query_parameters, read_or_none
from core.errors import ConcurrencyConflict
from core.hygiene import format_timestamp
from core.projections import DOC_TYPE_PROJECTION, DOC_TYPE_VIEW
from core.rules import ACTIVE_STATUSES
from core.store import Projection, SweepState, ViewQuery

DOC_TYPE_SENT = "sent"
SWEEP_STATE_PK = "sweep"
SWEEP_STATE_ID = "state"


class CosmosViewStore(ContainerStore):
    # --- projection records -------------------------------------------------------------------------------

    def read_projection(self, pk: str, assignment_id: str) -> Projection | None:
        body = read_or_none(self._container, assignment_id, pk)
        if body is None:
            return None
        keys = frozenset((str(entry[0]), str(entry[1])) for entry in body.get("entries", []))
        return Projection(version=int(body["version"]), keys=keys, etag=body["_etag"])

    def save_projection(self, pk: str, assignment_id: str, projection: Projection) -> str:
        body = {
            "id": assignment_id,
            "pk": pk,
            "docType": DOC_TYPE_PROJECTION,
            "version": projection.version,
            "entries": sorted([list(key) for key in projection.keys]),
        }
        conflict = ConcurrencyConflict(f"the projection of {assignment_id} was written concurrently")
        with self._errors(on_conflict=conflict):
            if projection.etag is None:
                saved = self._container.create_item(body)
            else:
                saved = self._container.replace_item(
                    assignment_id, body, etag=projection.etag, match_condition=MatchConditions.IfNotModified
                )
        return str(saved["_etag"])

    # --- entries ------------------------------------------------------------------------------------------

    def upsert(self, pk: str, body: dict[str, Any]) -> None:
        with self._errors():
            self._container.upsert_item(body)

    def delete(self, pk: str, item_id: str) -> None:
        with self._errors():
            try:
                self._container.delete_item(item_id, partition_key=pk)
            except CosmosHttpResponseError as error:
                if error.status_code != 404 or error.sub_status == SUBSTATUS_OWNER_MISSING:
                    raise

    # --- lists --------------------------------------------------------------------------------------------

    @staticmethod
    def _where(query: ViewQuery) -> tuple[list[str], dict[str, object]]:
        clauses = ["c.docType = @docType"]
        parameters: dict[str, object] = {"@docType": DOC_TYPE_VIEW}
        if query.statuses:
            clauses.append("ARRAY_CONTAINS(@statuses, c.status)")
            parameters["@statuses"] = [str(status) for status in query.statuses]
        if query.due_before is not None:
            # Stored timestamps share one fixed-width UTC format, so they compare as strings; null never matches.
            clauses.append("c.dueAt < @dueBefore")
            parameters["@dueBefore"] = format_timestamp(query.due_before)
        if query.overdue_at is not None:
            clauses.append("c.dueAt < @overdueAt AND ARRAY_CONTAINS(@active, c.status)")
            parameters["@overdueAt"] = format_timestamp(query.overdue_at)
            parameters["@active"] = sorted(str(status) for status in ACTIVE_STATUSES)
        if query.reader is not None:
            clauses.append(
                "(ARRAY_CONTAINS(c.readers, @reader)"
                " OR EXISTS(SELECT VALUE g FROM g IN c.groups WHERE ARRAY_CONTAINS(@groups, g)))"
            )
            parameters["@reader"] = query.reader
            parameters["@groups"] = list(query.groups)
        elif query.groups:
            clauses.append("EXISTS(SELECT VALUE g FROM g IN c.groups WHERE ARRAY_CONTAINS(@groups, g))")
            parameters["@groups"] = list(query.groups)
        return clauses, parameters

    def page(
        self, query: ViewQuery, *, page_size: int, continuation_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        clauses, parameters = self._where(query)
        order = "c.dueSort ASC" if query.order_by_due else "c.createdAt DESC"
        sql = f"SELECT VALUE c.assignment FROM c WHERE {' AND '.join(clauses)} ORDER BY {order}"  # noqa: S608
        return self._query_page(
            sql,
            parameters,
            continuation_token,
            token_from_caller=True,
            partition_key=query.pk,
            max_item_count=page_size,
        )

    def statuses(self, query: ViewQuery) -> list[str]:
        clauses, parameters = self._where(query)
        sql = f"SELECT VALUE c.status FROM c WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed clauses
        with self._errors():
            return [
                str(status)
                for status in self._container.query_items(
                    sql, parameters=query_parameters(parameters), partition_key=query.pk, max_item_count=1000
                )
            ]

    def due(
        self, bucket_pk: str, now: Any, limit: int, continuation_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        sql = "SELECT * FROM c WHERE c.docType = @docType AND c.dueAt <= @now ORDER BY c.dueAt ASC"
        parameters = {"@docType": DOC_TYPE_VIEW, "@now": format_timestamp(now)}
        return self._query_page(
            sql, parameters, continuation_token, token_from_caller=False, partition_key=bucket_pk, max_item_count=limit
        )

    def count(self, pk: str, *, due_by: Any = None) -> int:
        sql, parameters = "SELECT VALUE COUNT(1) FROM c", {}
        if due_by is not None:
            sql += " WHERE c.docType = @docType AND c.dueAt <= @now"
            parameters = {"@docType": DOC_TYPE_VIEW, "@now": format_timestamp(due_by)}
        with self._errors():
            counted: list[Any] = list(
                self._container.query_items(sql, parameters=query_parameters(parameters), partition_key=pk)
            )
        return int(counted[0]) if counted else 0

    def scan(self, *, continuation_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        sql = "SELECT * FROM c WHERE c.docType = @view OR c.docType = @projection"
        parameters = {"@view": DOC_TYPE_VIEW, "@projection": DOC_TYPE_PROJECTION}
        return self._query_page(
            sql,
            parameters,
            continuation_token,
            token_from_caller=False,
            enable_cross_partition_query=True,
            max_item_count=500,
        )

    # --- the sweep's cursor ---------------------------------------------------------------------------------

    def read_sweep_state(self) -> SweepState | None:
        body = read_or_none(self._container, SWEEP_STATE_ID, SWEEP_STATE_PK)
        return None if body is None else SweepState(cursor=body.get("cursor"), etag=body["_etag"])

    def save_sweep_state(self, state: SweepState) -> None:
        body = {"id": SWEEP_STATE_ID, "pk": SWEEP_STATE_PK, "docType": "sweepState", "cursor": state.cursor}
        try:
            with self._errors(on_conflict=ConcurrencyConflict("another sweep saved its cursor")):
                if state.etag is None:
                    self._container.create_item(body)
                else:
                    self._container.replace_item(
                        SWEEP_STATE_ID, body, etag=state.etag, match_condition=MatchConditions.IfNotModified
                    )
        except ConcurrencyConflict:
            # Overlapping sweeps: the other one's cursor is as good; the next sweep starts from it.
            return

    # --- notifications sent -------------------------------------------------------------------------------

    def was_sent(self, pk: str, event_id: str) -> bool:
        return read_or_none(self._container, event_id, pk) is not None

    def mark_sent(self, pk: str, event_id: str) -> None:
        with self._errors():
            self._container.upsert_item({"id": event_id, "pk": pk, "docType": DOC_TYPE_SENT})
