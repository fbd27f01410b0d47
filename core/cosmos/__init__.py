"""Everything Cosmos DB: the client and provisioning (`client`), the assignment store (`assignments`) and
the user directory (`users`). No SQL and no Cosmos SDK call lives outside this package."""

from core.cosmos.assignments import CosmosAssignmentStore
from core.cosmos.client import (
    ContainerNames,
    RoundTripCounter,
    ensure_containers,
    make_cosmos_client,
    read_or_none,
    translate_cosmos_errors,
)
from core.cosmos.users import CosmosDirectory

__all__ = [
    "ContainerNames",
    "CosmosAssignmentStore",
    "CosmosDirectory",
    "RoundTripCounter",
    "ensure_containers",
    "make_cosmos_client",
    "read_or_none",
    "translate_cosmos_errors",
]
