"""The domain error tree.

Every failure the service reports to a caller is one of these. They cross exactly two boundaries:
SDK errors become domain errors in `core.store` and `core.directory`, and domain errors become HTTP
responses in `triggers.http_errors` (one table, two renderings: problem+json for our routes, the
seed's `{errorKey, error}` body for the txn routes).

    DomainError
    ├── Unauthenticated            no usable bearer token                        401
    ├── Forbidden                  token lacks scope/role, or caller may read
    │                              the assignment but not perform the operation  403
    ├── RequestError               the request itself is unusable
    │   ├── InvalidRequest         not JSON, wrong content type, not an object   400
    │   │   └── TxnRequestError    a txn body breaks a rule of docs/api-rules.md, "The txn routes"; `code`
    │   │       │                  is the seed's errorKey                        400
    │   │       ├── InvalidRequestAttribute  a top-level attribute besides `params`
    │   │       ├── InvalidAssignAttribute   a `params` attribute the route does not take
    │   │       ├── SubmitKeyNotSpecified    `submitKey` missing, null or ""
    │   │       └── UserKeyNotSpecified      `userKey` missing, null or ""
    │   ├── PayloadTooLarge        body over the size limit                      413
    │   └── ValidationFailed       fields fail validation (carries `errors`)     422
    ├── IdempotencyKeyReused       same Idempotency-Key, different body          422
    ├── NotFound                   no such assignment                            404
    │   └── NotVisible             it exists but the caller may not read it      404
    ├── PreconditionFailed         If-Match does not match the current ETag      412
    ├── PreconditionRequired       If-Match is required and missing              428
    ├── ConflictError              the state forbids the operation               409
    │   ├── InvalidTransition      not allowed from the current status
    │   ├── AlreadyDelegated       delegated already, to someone else
    │   ├── DelegationNotAllowed   allowDelegation is false
    │   ├── RejectionNotAllowed    allowRejection is false
    │   ├── CriteriaNotManual      complete on a non-manual criterion
    │   ├── NotAssigned            the task has no assignee
    │   ├── AlreadyAssigned        the task has an assignee (txn assign)
    │   ├── NotATask               the assignment has no taskKey (txn routes)
    │   ├── Expired                now >= expiresAt
    │   ├── DuplicateId            an assignment with that id exists
    │   ├── DuplicateUpn           the UPN belongs to another user key
    │   └── LimitExceeded          a bound on what one assignment keeps is reached
    ├── UnprocessableError         well-formed but semantically refused          422
    │   ├── UserNotFound           not in the directory, or disabled
    │   ├── SelfDelegation         delegating to the current assignee
    │   ├── DelegationCycle        the delegate is already in the chain
    │   └── DelegationTooDeep      the chain would exceed DELEGATION_MAX_DEPTH
    └── ServiceUnavailable         Cosmos throttled, timed out or a container is
                                   missing; the directory unavailable            503

`ConcurrencyConflict` is deliberately *not* a DomainError: it means our own read-modify-write lost
a race, and use cases retry on it. Should it ever escape, it is a bug and surfaces as a 500.
"""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a caller may see. `code` is the machine-readable problem code."""

    code: str = "internalError"

    def __init_subclass__(cls, code: str | None = None, **kwargs: object) -> None:
        # The code is a class keyword so that a class adding nothing else is one line: `class X(Base, code="x"): ...`.
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(DomainError, code="unauthenticated"):
    def __init__(self, detail: str = "A valid bearer token is required", *, token_sent: bool = False) -> None:
        super().__init__(detail)
        self.token_sent = token_sent


class Forbidden(DomainError, code="forbidden"): ...


class RequestError(DomainError):
    pass


class InvalidRequest(RequestError, code="invalidRequest"): ...


class TxnRequestError(InvalidRequest):
    """A txn request that breaks one of the seed's own body rules (docs/api-rules.md, "The txn routes");
    `code` is its errorKey."""


class InvalidRequestAttribute(TxnRequestError, code="invalidRequestAttribute"):
    def __init__(self, attribute: str) -> None:
        super().__init__(f"Invalid request attribute: {attribute}")
        self.attribute = attribute


class InvalidAssignAttribute(TxnRequestError, code="invalidAssignAttribute"):
    def __init__(self, attribute: str) -> None:
        super().__init__(f"Invalid assign attribute: {attribute}")
        self.attribute = attribute


class SubmitKeyNotSpecified(TxnRequestError, code="submitKeyNotSpecified"):
    def __init__(self) -> None:
        super().__init__("submitKey not specified")


class UserKeyNotSpecified(TxnRequestError, code="userKeyNotSpecified"):
    def __init__(self) -> None:
        super().__init__("userKey not specified")


class PayloadTooLarge(RequestError, code="payloadTooLarge"): ...


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ValidationFailed(RequestError, code="validationFailed"):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class IdempotencyKeyReused(DomainError, code="idempotencyKeyReused"): ...


class NotFound(DomainError, code="notFound"): ...


class NotVisible(NotFound):
    """The assignment exists but the caller may not read it. Our routes hide this as 404; the txn
    routes report it as `accessDenied`, as their seed requires."""


class PreconditionFailed(DomainError, code="preconditionFailed"): ...


class PreconditionRequired(DomainError, code="preconditionRequired"): ...


class ConflictError(DomainError):
    pass


class InvalidTransition(ConflictError, code="invalidTransition"):
    def __init__(self, detail: str, *, current_status: str, delegated_to: str | None = None) -> None:
        super().__init__(detail)
        self.current_status = current_status
        self.delegated_to = delegated_to


class AlreadyDelegated(ConflictError, code="alreadyDelegated"): ...


class DelegationNotAllowed(ConflictError, code="delegationNotAllowed"): ...


class RejectionNotAllowed(ConflictError, code="rejectionNotAllowed"): ...


class CriteriaNotManual(ConflictError, code="criteriaNotManual"): ...


class NotAssigned(ConflictError, code="notAssigned"): ...


class AlreadyAssigned(ConflictError, code="alreadyAssigned"): ...


class NotATask(ConflictError, code="notATask"): ...


class Expired(ConflictError, code="expired"): ...


class DuplicateId(ConflictError, code="duplicateId"): ...


class DuplicateUpn(ConflictError, code="duplicateUpn"): ...


class LimitExceeded(ConflictError, code="limitExceeded"):
    """A write would pass a bound on what one assignment keeps (attempts, or Cosmos's item size)."""


class UnprocessableError(DomainError):
    pass


class UserNotFound(UnprocessableError, code="userNotFound"): ...


class SelfDelegation(UnprocessableError, code="selfDelegation"): ...


class DelegationCycle(UnprocessableError, code="delegationCycle"): ...


class DelegationTooDeep(UnprocessableError, code="delegationTooDeep"): ...


class ServiceUnavailable(DomainError, code="serviceUnavailable"):
    def __init__(self, detail: str = "The service is temporarily unavailable", *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConcurrencyConflict(Exception):
    """Our conditional write lost a race (ETag mismatch). Use cases re-read and retry."""
