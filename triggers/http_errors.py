"""The one table that maps domain errors to HTTP responses.

Two renderings share it: `application/problem+json` for our own routes (CONTRACTS.md), and the seed's
`{"errorKey", "error"}` body for the txn routes (seed 003), whose keys and messages are the seed's own.
An error not in the table is a bug: it is logged with a numeric error-log id and answered 500, and
nothing internal reaches the caller.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass

import azure.functions as func

from core import errors as e

log = logging.getLogger("assignments.http")

PROBLEM_JSON = "application/problem+json"


class MethodNotAllowed(e.DomainError):
    """HTTP-only: the path exists but not with this method. Raised by the catch-all route."""

    code = "methodNotAllowed"

    def __init__(self, detail: str, *, allowed: set[str]) -> None:
        super().__init__(detail)
        self.allowed = allowed


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    title: str
    # The txn routes' key and message; None falls back to the generic entry for the status.
    txn_key: str | None = None
    txn_message: str | None = None


ERROR_TABLE: dict[type[BaseException], ErrorMapping] = {
    e.Unauthenticated: ErrorMapping(401, "Unauthenticated", "unauthorized", "A valid bearer token is required"),
    e.Forbidden: ErrorMapping(403, "Forbidden", "forbidden", "The token lacks the required scope or role"),
    e.InvalidRequest: ErrorMapping(
        400, "Invalid request", "invalidRequest", "The request body must be a JSON object with a params map"
    ),
    e.PayloadTooLarge: ErrorMapping(413, "Payload too large", "payloadTooLarge", "The request body is too large"),
    e.ValidationFailed: ErrorMapping(422, "Validation failed"),
    e.IdempotencyKeyReused: ErrorMapping(422, "Idempotency key reused"),
    e.NotFound: ErrorMapping(
        404, "Not found", "txnNotFound", "The transaction specified by the submitKey was not found"
    ),
    e.NotVisible: ErrorMapping(
        404, "Not found", "accessDenied", "The user does not have access to transaction specified by the submitKey"
    ),
    MethodNotAllowed: ErrorMapping(405, "Method not allowed"),
    e.PreconditionFailed: ErrorMapping(412, "Precondition failed"),
    e.PreconditionRequired: ErrorMapping(428, "Precondition required"),
    e.InvalidTransition: ErrorMapping(
        409,
        "Invalid transition",
        "txnAlreadyFinished",
        "The transaction specified by the submitKey has already been finished (Completed or Abandoned)",
    ),
    e.Expired: ErrorMapping(
        409,
        "Expired",
        "txnAlreadyFinished",
        "The transaction specified by the submitKey has already been finished (Completed or Abandoned)",
    ),
    e.AlreadyDelegated: ErrorMapping(409, "Already delegated"),
    e.DelegationNotAllowed: ErrorMapping(409, "Delegation not allowed"),
    e.RejectionNotAllowed: ErrorMapping(409, "Rejection not allowed"),
    e.CriteriaNotManual: ErrorMapping(409, "Completion criterion is not manual"),
    e.NotAssigned: ErrorMapping(409, "Not assigned", "txnNotAssigned", "The task is not currently assigned to a user."),
    e.AlreadyAssigned: ErrorMapping(
        409,
        "Already assigned",
        "txnAlreadyAssigned",
        "The task is currently assigned to a user. To reassign it, unassign it first, then assign it to the new user.",
    ),
    e.NotATask: ErrorMapping(
        409, "Not a task", "txnNotTask", "The transaction specified by the submitKey is not a task"
    ),
    e.DuplicateId: ErrorMapping(409, "Duplicate id"),
    e.DuplicateUpn: ErrorMapping(409, "Duplicate UPN"),
    e.UserNotFound: ErrorMapping(
        422, "User not found", "userNotFound", "The user account specified by the userKey was not found"
    ),
    e.SelfDelegation: ErrorMapping(422, "Self delegation"),
    e.DelegationCycle: ErrorMapping(422, "Delegation cycle"),
    e.DelegationTooDeep: ErrorMapping(422, "Delegation too deep"),
    e.ServiceUnavailable: ErrorMapping(
        503, "Service unavailable", "serviceUnavailable", "The service is temporarily unavailable"
    ),
}

INTERNAL_ERROR = ErrorMapping(500, "Internal error", "internalError", "Please see Error Log ID {number}")


def mapping_for(error: BaseException) -> ErrorMapping:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return INTERNAL_ERROR


def _headers_for(error: BaseException) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(error, e.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if error.token_sent else "Bearer"
    if isinstance(error, e.ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(error.allowed))
    return headers


def new_error_log_id() -> int:
    return secrets.randbelow(9_000_000_000) + 1_000_000_000


def log_internal_error(error: BaseException, *, route: str) -> int:
    """Log an unexpected error with a number the caller can quote; the number is all they see."""
    error_log_id = new_error_log_id()
    log.error("Error Log ID %d: unhandled error in %s", error_log_id, route, exc_info=error)
    return error_log_id


def problem_response(error: BaseException, *, trace_id: str, route: str) -> func.HttpResponse:
    mapping = mapping_for(error)
    body: dict[str, object] = {
        "type": "about:blank",
        "title": mapping.title,
        "status": mapping.status,
        "traceId": trace_id,
    }
    if isinstance(error, e.DomainError) and mapping is not INTERNAL_ERROR:
        body["detail"] = error.detail
        body["code"] = error.code
        if isinstance(error, e.ValidationFailed):
            body["errors"] = [{"field": item.field, "message": item.message} for item in error.errors]
        if isinstance(error, e.InvalidTransition) and error.delegated_to:
            body["delegatedTo"] = error.delegated_to
    else:
        error_log_id = log_internal_error(error, route=route)
        body["detail"] = f"An unexpected error occurred. Error Log ID {error_log_id}"
        body["code"] = "internalError"
        body["errorLogId"] = error_log_id
    if isinstance(error, e.DomainError) and mapping.status >= 500:
        log.warning("%s on %s: %s", error.code, route, error.detail)
    return func.HttpResponse(
        json.dumps(body), status_code=mapping.status, mimetype=PROBLEM_JSON, headers=_headers_for(error)
    )


class TxnError(Exception):
    """A txn-route request error whose seed key and message are fixed by the seed (e.g. `submitKeyNotSpecified`)."""

    def __init__(self, key: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.status = status


def txn_error_response(error: BaseException, *, route: str) -> func.HttpResponse:
    """The seed's error body. The status is 400 unless the contract says otherwise (401, 403, 413, 503, 500)."""
    if isinstance(error, TxnError):
        key, message, status = error.key, error.message, error.status
    else:
        mapping = mapping_for(error)
        if mapping is INTERNAL_ERROR or mapping.txn_key is None:
            error_log_id = log_internal_error(error, route=route)
            key, status = "internalError", 500
            message = INTERNAL_ERROR.txn_message.format(number=error_log_id)  # type: ignore[union-attr]
        else:
            key, message = mapping.txn_key, mapping.txn_message or ""
            status = mapping.status if mapping.status in (401, 403, 413, 503) else 400
    return func.HttpResponse(
        json.dumps({"errorKey": key, "error": message}),
        status_code=status,
        mimetype="application/json",
        headers=_headers_for(error),
    )
