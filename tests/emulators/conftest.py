"""Fixtures for the emulator tests; the services themselves come from tests/conftest.py."""

from __future__ import annotations

import uuid

import pytest
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey

from tests.support.services import RunningService, make_cosmos_client


@pytest.fixture(scope="session")
def cosmos_client(cosmos_service: RunningService) -> CosmosClient:
    return make_cosmos_client(cosmos_service.endpoint, cosmos_service.key)


@pytest.fixture(scope="session")
def cosmos_database(cosmos_client: CosmosClient) -> DatabaseProxy:
    return cosmos_client.create_database_if_not_exists(f"emulator-tests-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def container(cosmos_database: DatabaseProxy) -> ContainerProxy:
    """A fresh container partitioned on /pk, so each test sees only its own items and changes."""
    return cosmos_database.create_container(f"c-{uuid.uuid4().hex[:12]}", partition_key=PartitionKey("/pk"))
