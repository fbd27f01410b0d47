"""The one table that maps domain errors to HTTP responses.

Two renderings share it: `application/problem+json` for our own routes
(docs/api-rules.md, "Errors of our own routes"), and the seed's `{"errorKey", "error"}` body for the txn
routes (docs/api-rules.md, "The txn routes"), whose keys and messages are the seed's own.
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


class EndpointNotFound(e.NotFound):
    """HTTP-only: no route matches the path. Raised by the txn routes' catch-all under /workspaces."""


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    title: str
    # The txn routes' errorKey; an error without one is answered there as an internal error (500).
    txn_key: str | None = None
    # The txn routes' message; None means the error's own detail (for messages that name an attribute).
    txn_message: str | None = None
    # The txn routes answer 400 unless the contract names another status.
    txn_status: int = 400


ERROR_TABLE: dict[type[BaseException], ErrorMapping] = {
    e.Unauthenticated: ErrorMapping(
        401, "Unauthenticated", "unauthorized", "A valid bearer token is required", txn_status=401
    ),
    e.Forbidden: ErrorMapping(
        403, "Forbidden", "forbidden", "The token lacks the required scope or role", txn_status=403
    ),
    e.InvalidRequest: ErrorMapping(
        400, "Invalid request", "invalidRequest", "The request body must be a JSON object with a params map"
    ),
    e.InvalidRequestAttribute: ErrorMapping(400, "Invalid request", "invalidRequestAttribute"),
    e.InvalidAssignAttribute: ErrorMapping(400, "Invalid request", "invalidAssignAttribute"),
    e.SubmitKeyNotSpecified: ErrorMapping(400, "Invalid request", "submitKeyNotSpecified", "submitKey not specified"),
    e.UserKeyNotSpecified: ErrorMapping(400, "Invalid request", "userKeyNotSpecified", "userKey not specified"),
    e.PayloadTooLarge: ErrorMapping(
        413, "Payload too large", "payloadTooLarge", "The request body is too large", txn_status=413
    ),
    # On the txn routes a body value JSON cannot hold as data (say 1e400) or a malformed Idempotency-Key header;
    # its detail says what is wrong.
    e.ValidationFailed: ErrorMapping(422, "Validation failed", "validationFailed", txn_status=422),
    e.IdempotencyKeyReused: ErrorMapping(
        422,
        "Idempotency key reused",
        "idempotencyKeyReused",
        "This Idempotency-Key was already used with a different request body",
        txn_status=422,
    ),
    e.NotFound: ErrorMapping(
        404, "Not found", "txnNotFound", "The transaction specified by the submitKey was not found"
    ),
    e.NotVisible: ErrorMapping(
        404, "Not found", "accessDenied", "The user does not have access to transaction specified by the submitKey"
    ),
    EndpointNotFound: ErrorMapping(
        404, "Not found", "notFound", "Ensure the URL endpoint is entered correctly.", txn_status=404
    ),
    MethodNotAllowed: ErrorMapping(
        405, "Method not allowed", "methodNotAllowed", "The HTTP method is not allowed here", txn_status=405
    ),
    e.PreconditionFailed: ErrorMapping(
        412, "Precondition failed", "preconditionFailed", "The task has changed since it was read", txn_status=412
    ),
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
    # On the txn routes a write Cosmos refuses as too large is the seed's generic 400 with a key of ours.
    e.LimitExceeded: ErrorMapping(409, "Limit exceeded", "limitExceeded", "The task cannot hold more"),
    e.UserNotFound: ErrorMapping(
        422, "User not found", "userNotFound", "The user account specified by the userKey was not found"
    ),
    e.SelfDelegation: ErrorMapping(422, "Self delegation"),
    e.DelegationCycle: ErrorMapping(422, "Delegation cycle"),
    e.DelegationTooDeep: ErrorMapping(422, "Delegation too deep"),
    e.ServiceUnavailable: ErrorMapping(
        503, "Service unavailable", "serviceUnavailable", "The service is temporarily unavailable", txn_status=503
    ),
}

INTERNAL_ERROR = ErrorMapping(500, "Internal error")


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


def _txn_response(key: str, message: str, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"errorKey": key, "error": message}),
        status_code=status,
        mimetype="application/json",
        headers=headers or {},
    )


def txn_error_response(error: BaseException, *, route: str) -> func.HttpResponse:
    """The seed's error body, with the key, message and status the table gives the txn routes."""
    mapping = mapping_for(error)
    if not isinstance(error, e.DomainError) or mapping.txn_key is None:
        error_log_id = log_internal_error(error, route=route)
        return _txn_response("internalError", f"Please see Error Log ID {error_log_id}", 500)
    if mapping.status >= 500:
        log.warning("%s on %s: %s", error.code, route, error.detail)
    message = mapping.txn_message if mapping.txn_message is not None else error.detail
    return _txn_response(mapping.txn_key, message, mapping.txn_status, _headers_for(error))
