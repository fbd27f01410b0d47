"""function_app.py indexes as the Functions Python worker indexes it."""

import importlib

import azure.functions as func
import pytest

from localhost.indexing import IndexingError, index_app, index_module

EXPECTED_HTTP_ROUTES = {
    "create_assignment": ("assignments", ["POST"]),
    "list_assignments": ("assignments", ["GET"]),
    "get_assignment": ("assignments/{id}", ["GET"]),
    "edit_assignment": ("assignments/{id}", ["PATCH"]),
    "delegate_assignment": ("assignments/{id}/delegate", ["POST"]),
    "post_progress_event": ("assignments/{id}/events", ["POST"]),
    "complete_assignment": ("assignments/{id}/complete", ["POST"]),
    "reject_assignment": ("assignments/{id}/reject", ["POST"]),
    "cancel_assignment": ("assignments/{id}/cancel", ["POST"]),
    "reassign_assignment": ("assignments/{id}/reassign", ["POST"]),
    "put_user": ("users/{userKey}", ["PUT"]),
    "get_user": ("users/{userKey}", ["GET"]),
    "get_history": ("assignments/{id}/history", ["GET"]),
    "summarize_assignments": ("assignments/summary", ["GET"]),
    "list_roster": ("targets/{targetType}/{targetId}/assignments", ["GET"]),
    "summarize_roster": ("targets/{targetType}/{targetId}/summary", ["GET"]),
    "run_sweep": ("ops/sweep", ["POST"]),
    "openapi_document": ("openapi.json", ["GET"]),
    "docs": ("docs", ["GET"]),
    "docs_asset": ("docs/{asset}", ["GET"]),
    "txn_assign": ("workspaces/secure/api/v1/txn/assign", ["POST"]),
    "txn_unassign": ("workspaces/secure/api/v1/txn/unassign", ["POST"]),
    "health": ("health", ["GET"]),
}

# Triggers other than HTTP, by function name.
OTHER_TRIGGERS = {"project_changes": "cosmosDBTrigger", "retry_changes": "queueTrigger", "sweep_due": "timerTrigger"}


def test_function_app_has_exactly_one_function_app() -> None:
    module = importlib.import_module("function_app")
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    assert len(apps) == 1


def test_every_function_passes_the_workers_checks() -> None:
    functions = {f.name: f for f in index_app()}
    catch_alls = {
        "workspaces_not_found",
        "assignments_not_found",
        "users_not_found",
        "health_not_found",
        "targets_not_found",
        "ops_not_found",
    }
    assert set(functions) == set(EXPECTED_HTTP_ROUTES) | catch_alls | set(OTHER_TRIGGERS)
    for name, kind in OTHER_TRIGGERS.items():
        assert functions[name].trigger["type"] == kind
    for name, (route, methods) in EXPECTED_HTTP_ROUTES.items():
        trigger = functions[name].trigger
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == route
        assert trigger["methods"] == methods
        assert trigger["authLevel"] == "ANONYMOUS"
        assert trigger["direction"] == "IN"


def test_every_http_function_is_anonymous_because_the_code_validates_tokens() -> None:
    for function in index_app():
        if function.trigger["type"] == "httpTrigger":
            assert function.trigger["authLevel"] == "ANONYMOUS", function.name


def test_test_only_functions_stay_out_of_function_app() -> None:
    names = {f.name for f in index_app()}
    assert not any(name.startswith("test_") for name in names)


def test_a_renamed_trigger_parameter_fails_indexing() -> None:
    module = importlib.import_module("tests.fixtures.renamed_trigger_app")
    with pytest.raises(IndexingError, match="do not match binding names"):
        index_module(module)


def test_out_on_an_input_binding_fails_indexing() -> None:
    module = importlib.import_module("tests.fixtures.out_without_output_binding_app")
    with pytest.raises(IndexingError, match=r"must not be func\.Out"):
        index_module(module)


def test_importing_function_app_reads_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in ("COSMOS_ENDPOINT", "AUTH_TENANT_ID", "AUTH_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    for module in [m for m in sys.modules if m == "function_app" or m.startswith(("triggers", "core"))]:
        monkeypatch.delitem(sys.modules, module)
    fresh = importlib.import_module("function_app")
    assert index_module(fresh)


def test_catch_alls_stay_under_our_prefixes() -> None:
    # A bare {*path} with an empty routePrefix would shadow the host's /admin and /runtime routes.
    routes = [f.trigger["route"] for f in index_app() if "{*" in f.trigger.get("route", "")]
    assert routes
    assert all(not route.startswith("{*") for route in routes)
