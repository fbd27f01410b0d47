"""GET /openapi.json and GET /docs: the document names exactly the routes the app registers, is valid
OpenAPI 3.1, is built from the request models and the one error table, and takes the tenant and client id
from the settings at request time; Swagger UI is the pinned package's files, served by the app itself."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_openapi

from core import openapi as doc
from core.bootstrap import Runtime
from core.models import Assignment, Status
from core.openapi import DOCS_ASSETS
from core.settings import Settings
from localhost import demo
from localhost.indexing import index_app
from localhost.services import REPO_ROOT
from tests.support.api import (
    ASSIGNEE,
    ORIGINATOR,
    act,
    add_user,
    assert_problem,
    catch_up,
    delegate,
    new_assignment,
    new_upn,
    txn,
)
from tests.support.app import TEST_AUDIENCE, TEST_TENANT, FunctionCaller, InstallRuntime, Response
from triggers.http_errors import ERROR_TABLE
from triggers.http_support import ROUTES
from triggers.openapi import INITIALIZER, SWAGGER_UI_DIR, SWAGGER_UI_VERSION

# The app's catch-alls: documented in the document's description, not as operations (OpenAPI has no
# catch-all paths). A new one must be added here knowingly.
CATCH_ALLS = {
    "assignments_not_found",
    "users_not_found",
    "health_not_found",
    "targets_not_found",
    "ops_not_found",
    "workspaces_not_found",
}
PACKAGE = REPO_ROOT / "emulators" / "node_modules" / "swagger-ui-dist"


def _get(app: FunctionCaller, function: str, url: str, **kw: Any) -> Response:
    return app.call(function, url=url, **kw)


@pytest.fixture
def document(app: FunctionCaller) -> dict[str, Any]:
    response = _get(app, "openapi_document", "/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    body: dict[str, Any] = response.json()
    return body


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method.lower()]
    return operation


class _Conforms:
    """A schema of the document, its `#/components/...` references resolved in the document."""

    def __init__(self, document: dict[str, Any], schema: dict[str, Any]) -> None:
        self._validator = OAS31Validator({**schema, "components": document["components"]})

    def problems(self, instance: object) -> list[str]:
        return [f"{list(error.absolute_path)}: {error.message}" for error in self._validator.iter_errors(instance)]

    def check(self, instance: object) -> None:
        problems = self.problems(instance)
        assert not problems, problems


def _schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> _Conforms:
    return _Conforms(document, schema)


# --- the routes ----------------------------------------------------------------------------------------


def test_it_is_a_valid_openapi_3_1_document(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_every_registered_route_and_method_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    documented = doc.documented_routes(document)
    registered = {(method, route.template) for route in ROUTES for method in route.methods}
    assert documented == registered, (
        f"registered, not documented: {sorted(registered - documented)}; "
        f"documented, not registered: {sorted(documented - registered)} (core/openapi.py, OPERATIONS)"
    )

    indexed: set[tuple[str, str]] = set()
    functions: set[str] = set()
    catch_alls: set[str] = set()
    for function in index_app("function_app"):
        trigger = function.trigger
        if trigger["type"] != "httpTrigger":
            continue
        if "{*" in trigger["route"]:
            catch_alls.add(function.name)
            continue
        functions.add(function.name)
        indexed |= {(str(method).upper(), trigger["route"]) for method in trigger.get("methods") or ["*"]}
    assert indexed == documented
    assert catch_alls == CATCH_ALLS
    operation_ids = {operation["operationId"] for _, _, operation in doc.iter_operations(document)}
    assert operation_ids == functions, "each operation's operationId is its function's name"


def test_the_comparison_notices_a_route_missing_from_the_document(document: dict[str, Any]) -> None:
    del document["paths"]["/assignments/{id}"]["patch"]
    registered = {(method, route.template) for route in ROUTES for method in route.methods}
    assert registered - doc.documented_routes(document) == {("PATCH", "assignments/{id}")}


def test_the_api_version_is_the_projects(document: dict[str, Any]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert document["info"]["version"] == project["version"]


def test_building_it_needs_no_azure_functions() -> None:
    code = "import sys, core.openapi; sys.exit('azure.functions' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False).returncode == 0


# --- security ------------------------------------------------------------------------------------------


def test_the_oauth2_scheme_is_this_deployments_entra_app(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["entra"]
    scope = f"api://{TEST_AUDIENCE}/Assignments.ReadWrite"
    assert scheme["type"] == "oauth2"
    login = f"https://login.microsoftonline.com/{TEST_TENANT}/oauth2/v2.0"
    assert scheme["flows"]["authorizationCode"] == {
        "authorizationUrl": f"{login}/authorize",
        "tokenUrl": f"{login}/token",
        "scopes": {scope: scheme["flows"]["authorizationCode"]["scopes"][scope]},
    }
    assert scheme["flows"]["implicit"]["authorizationUrl"] == f"{login}/authorize"
    assert list(scheme["flows"]["implicit"]["scopes"]) == [scope]
    assert list(scheme["flows"]["clientCredentials"]["scopes"]) == [f"api://{TEST_AUDIENCE}/.default"]
    pasted = document["components"]["securitySchemes"]["bearerToken"]
    assert (pasted["type"], pasted["scheme"], pasted["bearerFormat"]) == ("http", "bearer", "JWT")
    for role in ("Assignments.Admin", "Assignments.Report"):
        assert role in scheme["description"]
        assert role in document["info"]["description"]


def test_the_client_id_and_tenant_are_read_at_request_time(
    app: FunctionCaller, settings: Settings, own_runtime: InstallRuntime
) -> None:
    other = settings.model_copy(
        update={"auth_audiences": ["0b7c5d1e-0000-4000-8000-00000000abcd"], "auth_tenant_ids": ["t1", "t2"]}
    )
    caller = own_runtime(Runtime(other))
    body = _get(caller, "openapi_document", "/openapi.json").json()
    flows = body["components"]["securitySchemes"]["entra"]["flows"]
    assert list(flows["authorizationCode"]["scopes"]) == [
        "api://0b7c5d1e-0000-4000-8000-00000000abcd/Assignments.ReadWrite"
    ]
    # Several tenants: sign in through `organizations`.
    assert flows["implicit"]["authorizationUrl"].startswith("https://login.microsoftonline.com/organizations/")
    initializer = _get(caller, "docs_asset", f"/docs/{INITIALIZER}", route_params={"asset": INITIALIZER})
    assert '"clientId": "0b7c5d1e-0000-4000-8000-00000000abcd"' in initializer.body.decode()


@pytest.mark.parametrize(
    ("audiences", "client_id", "scope"),
    [
        (
            ["6e74172b-be56-4843-9ff4-e66a39bb12e3"],
            "6e74172b-be56-4843-9ff4-e66a39bb12e3",
            "api://6e74172b-be56-4843-9ff4-e66a39bb12e3/Assignments.ReadWrite",
        ),
        (["api://assignments-local"], "assignments-local", "api://assignments-local/Assignments.ReadWrite"),
        (["c1", "api://contoso.com/assignments/"], "c1", "api://contoso.com/assignments/Assignments.ReadWrite"),
    ],
)
def test_the_api_identity_of_an_audience_list(audiences: list[str], client_id: str, scope: str) -> None:
    identity = doc.api_identity(audiences)
    assert (identity.client_id, identity.user_scope) == (client_id, scope)


def test_anonymous_routes_say_so_and_the_others_need_the_scheme(document: dict[str, Any]) -> None:
    anonymous = {"health", "openapi_document", "docs", "docs_asset"}
    for method, path, operation in doc.iter_operations(document):
        name = operation["operationId"]
        if name in anonymous:
            assert operation["security"] == [], name
            assert "401" not in operation["responses"], name
            continue
        assert operation["security"] == [
            {"entra": [f"api://{TEST_AUDIENCE}/Assignments.ReadWrite"]},
            {"entra": [f"api://{TEST_AUDIENCE}/.default"]},
            {"bearerToken": []},
        ], name
        unauthenticated = operation["responses"]["401"]
        assert "WWW-Authenticate" in unauthenticated["headers"], name
        assert "403" in operation["responses"], f"{method} {path}"
    assert _operation(document, "POST", "/assignments/{id}/events")["x-app-roles"] == [
        "Assignments.Admin",
        "Assignments.Report",
    ]


# --- bodies and answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "model", "media_types", "required"),
    [
        ("POST", "/assignments", "CreateRequest", ["application/json"], True),
        ("POST", "/assignments/{id}/events", "EventRequest", ["application/json"], True),
        ("PATCH", "/assignments/{id}", "PatchRequest", ["application/merge-patch+json", "application/json"], True),
        ("POST", "/assignments/{id}/delegate", "DelegateRequest", ["application/json"], True),
        ("POST", "/assignments/{id}/reassign", "ReassignRequest", ["application/json"], True),
        ("POST", "/assignments/{id}/reject", "RejectRequest", ["application/json"], False),
        ("POST", "/assignments/{id}/cancel", "CancelRequest", ["application/json"], False),
        ("POST", "/assignments/{id}/complete", "CompleteRequest", ["application/json"], False),
        ("PUT", "/users/{userKey}", "UserRequest", ["application/json"], True),
        ("POST", "/ops/sweep", "SweepRequest", ["application/json"], False),
        ("POST", "/workspaces/secure/api/v1/txn/assign", "TxnAssignBody", ["application/json"], True),
        ("POST", "/workspaces/secure/api/v1/txn/unassign", "TxnUnassignBody", ["application/json"], True),
    ],
)
def test_request_bodies_are_the_request_models(
    document: dict[str, Any], method: str, path: str, model: str, media_types: list[str], required: bool
) -> None:
    body = _operation(document, method, path)["requestBody"]
    assert body["required"] is required
    assert list(body["content"]) == media_types
    for content in body["content"].values():
        assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}
    schema = document["components"]["schemas"][model]
    assert schema["additionalProperties"] is False, "unknown fields are refused"


def _query(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    parameters = [p for p in _operation(document, "GET", path).get("parameters", []) if p["in"] == "query"]
    assert all(not p["required"] for p in parameters)
    return {p["name"]: p for p in parameters}


def test_the_list_query_is_the_list_models(document: dict[str, Any]) -> None:
    parameters = _query(document, "/assignments")
    assert set(parameters) == {"role", "status", "dueBefore", "overdue", "orderBy", "pageSize", "continuationToken"}
    assert (parameters["status"]["style"], parameters["status"]["explode"]) == ("form", False)
    assert parameters["pageSize"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}
    assert parameters["overdue"]["schema"] == {"type": "boolean", "default": False}
    assert parameters["orderBy"]["schema"]["default"] == "createdAt"
    assert document["components"]["schemas"]["ListOrder"]["enum"] == ["createdAt", "dueAt"]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/assignments/{id}/history", {"pageSize", "continuationToken"}),
        ("/assignments/summary", {"role"}),
        (
            "/targets/{targetType}/{targetId}/assignments",
            {"status", "overdue", "orderBy", "pageSize", "continuationToken"},
        ),
        ("/targets/{targetType}/{targetId}/summary", set()),
    ],
)
def test_the_other_queries_are_their_models(document: dict[str, Any], path: str, names: set[str]) -> None:
    assert set(_query(document, path)) == names


def test_a_target_is_named_by_its_type_and_id(document: dict[str, Any]) -> None:
    for path in ("/targets/{targetType}/{targetId}/assignments", "/targets/{targetType}/{targetId}/summary"):
        path_parameters = {p["name"]: p for p in _operation(document, "GET", path)["parameters"] if p["in"] == "path"}
        assert path_parameters["targetType"]["schema"]["enum"] == ["chat", "document", "survey"]
        assert path_parameters["targetId"]["schema"] == {"type": "string", "minLength": 1, "maxLength": 256}


def test_the_counts_name_every_status(document: dict[str, Any]) -> None:
    counts = document["components"]["schemas"]["StatusCounts"]
    assert set(counts["properties"]) == set(counts["required"]) == {str(status) for status in Status}
    for name in ("AssignmentSummary", "RosterSummary"):
        assert document["components"]["schemas"][name]["properties"]["counts"] == {
            "$ref": "#/components/schemas/StatusCounts"
        }


def test_the_public_assignment_has_every_field_always_and_nothing_else(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Assignment"]
    aliases = {info.alias or name for name, info in Assignment.model_fields.items()}
    assert set(schema["properties"]) == aliases
    assert set(schema["required"]) == aliases
    assert schema["additionalProperties"] is False
    assert schema["properties"]["createdAt"]["pattern"] == doc.TIMESTAMP_OUT_PATTERN


def test_a_real_assignment_and_a_real_page_conform(app: FunctionCaller, document: dict[str, Any]) -> None:
    created = new_assignment(app, dueAt="2030-01-31T17:00:00+01:00")
    _schema_validator(document, {"$ref": "#/components/schemas/Assignment"}).check(created)
    page = app.call(
        "list_assignments", url="/assignments", token=app.tokens.user(ORIGINATOR), params={"role": "originator"}
    )
    _schema_validator(document, {"$ref": "#/components/schemas/AssignmentPage"}).check(page.json())
    leaked = {**created, "pk": "internal"}
    assert _schema_validator(document, {"$ref": "#/components/schemas/Assignment"}).problems(leaked)


def _conforms(document: dict[str, Any], method: str, path: str, response: Response) -> None:
    assert response.status == 200, response.body
    schema = _operation(document, method, path)["responses"]["200"]["content"]["application/json"]["schema"]
    _schema_validator(document, schema).check(response.json())


def test_a_real_history_and_real_summaries_and_rosters_conform(app: FunctionCaller, document: dict[str, Any]) -> None:
    target_id = f"openapi-{new_upn()}"
    created = new_assignment(app, targetId=target_id)
    _, bea = add_user(app)
    assert act(app, "reassign", created["id"], {"toUpn": bea, "reason": "Adam is away"}).status == 200
    new_assignment(app, targetId=target_id, dueAt="2030-01-31T17:00:00Z")
    catch_up(app)
    originator = app.tokens.user(ORIGINATOR)

    history = app.call(
        "get_history",
        url=f"/assignments/{created['id']}/history",
        token=originator,
        route_params={"id": created["id"]},
        params={"pageSize": "2"},
    )
    _conforms(document, "GET", "/assignments/{id}/history", history)
    assert history.json()["continuationToken"] is not None
    rest = app.call(
        "get_history",
        url=f"/assignments/{created['id']}/history",
        token=originator,
        route_params={"id": created["id"]},
        params={"pageSize": "2", "continuationToken": history.json()["continuationToken"]},
    )
    _conforms(document, "GET", "/assignments/{id}/history", rest)
    assert {"from", "to", "reason"} <= rest.json()["items"][-1].keys(), "the reassignment names them"
    item = {**rest.json()["items"][-1], "recipients": []}
    assert _schema_validator(document, {"$ref": "#/components/schemas/HistoryItem"}).problems(item)

    summary = app.call(
        "summarize_assignments", url="/assignments/summary", token=originator, params={"role": "originator"}
    )
    _conforms(document, "GET", "/assignments/summary", summary)

    route = {"targetType": "chat", "targetId": target_id}
    roster_url = f"/targets/chat/{target_id}"
    params = {"orderBy": "dueAt", "overdue": "false", "status": "pending,in_progress"}
    roster = app.call(
        "list_roster", url=f"{roster_url}/assignments", token=originator, route_params=route, params=params
    )
    _conforms(document, "GET", "/targets/{targetType}/{targetId}/assignments", roster)
    assert len(roster.json()["items"]) == 2
    counted = app.call("summarize_roster", url=f"{roster_url}/summary", token=originator, route_params=route)
    _conforms(document, "GET", "/targets/{targetType}/{targetId}/summary", counted)
    assert counted.json()["total"] == 2

    for unread in (app.tokens.user(ASSIGNEE), app.tokens.user(new_upn())):
        answer = app.call("summarize_roster", url=f"{roster_url}/summary", token=unread, route_params=route)
        _conforms(document, "GET", "/targets/{targetType}/{targetId}/summary", answer)


def test_a_real_sweep_conforms(app: FunctionCaller, document: dict[str, Any]) -> None:
    admin = app.tokens.admin_app()
    bodies: tuple[dict[str, Any] | None, ...] = (None, {})  # no body, or `{}`
    for body in bodies:
        swept = app.call("run_sweep", method="POST", url="/ops/sweep", token=admin, json_body=body)
        _conforms(document, "POST", "/ops/sweep", swept)
    refused = app.call("run_sweep", method="POST", url="/ops/sweep", token=app.tokens.user(ORIGINATOR))
    assert_problem(refused, 403, "forbidden")


def test_writes_document_their_etag_and_creates_their_location(document: dict[str, Any]) -> None:
    created = _operation(document, "POST", "/assignments")["responses"]["201"]
    assert set(created["headers"]) == {"ETag", "Location"}
    assert set(_operation(document, "POST", "/assignments/{id}/cancel")["responses"]["200"]["headers"]) == {"ETag"}
    delegate_answers = _operation(document, "POST", "/assignments/{id}/delegate")["responses"]
    assert set(delegate_answers["200"]["headers"]) == set(delegate_answers["201"]["headers"]) == {"ETag", "Location"}


# --- errors --------------------------------------------------------------------------------------------


def _codes(operation: Mapping[str, Any], status: int) -> list[str]:
    schema = operation["responses"][str(status)]["content"]["application/problem+json"]["schema"]
    codes: list[str] = schema["allOf"][1]["properties"]["code"]["enum"]
    return codes


def test_problem_codes_are_listed_per_route_and_status_from_the_error_table(document: dict[str, Any]) -> None:
    delegate_op = _operation(document, "POST", "/assignments/{id}/delegate")
    assert set(_codes(delegate_op, 409)) == {
        "invalidTransition",
        "expired",
        "limitExceeded",
        "alreadyDelegated",
        "notAssigned",
        "delegationNotAllowed",
        "duplicateId",
    }
    assert set(_codes(delegate_op, 422)) == {
        "validationFailed",
        "idempotencyKeyReused",
        "selfDelegation",
        "delegationCycle",
        "delegationTooDeep",
        "userNotFound",
    }
    assert _codes(_operation(document, "PATCH", "/assignments/{id}"), 428) == ["preconditionRequired"]
    assert _codes(_operation(document, "GET", "/assignments/{id}"), 404) == ["notFound"]
    assert "409" not in _operation(document, "GET", "/assignments/{id}")["responses"]
    for method, path, operation in doc.iter_operations(document):
        responses = operation["responses"]
        assert "500" in responses, f"{method} {path}"
        for status, response in responses.items():
            content = response.get("content", {})
            if "application/problem+json" in content and status != "500":
                for code in _codes(operation, int(status)):
                    rows = [row for cls, row in ERROR_TABLE.items() if getattr(cls, "code", None) == code]
                    assert any(row.status == int(status) for row in rows), f"{method} {path}: {code} is not {status}"


def test_a_real_problem_conforms_to_its_routes_answer(app: FunctionCaller, document: dict[str, Any]) -> None:
    created = new_assignment(app)
    refused = delegate(app, created["id"], {"toUpn": new_upn()}, token=app.tokens.user(ORIGINATOR))
    assert_problem(refused, 403, "forbidden")
    schema = _operation(document, "POST", "/assignments/{id}/delegate")["responses"]["403"]["content"]
    _schema_validator(document, schema["application/problem+json"]["schema"]).check(refused.json())


def test_the_txn_routes_document_the_seeds_body_with_its_keys_and_messages(
    app: FunctionCaller, document: dict[str, Any]
) -> None:
    assign = _operation(document, "POST", "/workspaces/secure/api/v1/txn/assign")
    bad_request = assign["responses"]["400"]["content"]["application/json"]["schema"]
    assert bad_request["allOf"][0] == {"$ref": "#/components/schemas/TxnError"}
    variants = {
        v["properties"]["errorKey"]["const"]: v["properties"]["error"] for v in bad_request["allOf"][1]["anyOf"]
    }
    assert variants["txnNotFound"] == {"const": "The transaction specified by the submitKey was not found"}
    assert variants["userKeyNotSpecified"] == {"const": "userKey not specified"}
    assert set(variants) == {
        "invalidRequest",
        "invalidRequestAttribute",
        "invalidAssignAttribute",
        "submitKeyNotSpecified",
        "userKeyNotSpecified",
        "txnNotFound",
        "accessDenied",
        "txnAlreadyFinished",
        "txnNotTask",
        "txnAlreadyAssigned",
        "userNotFound",
    }
    unassign = _operation(document, "POST", "/workspaces/secure/api/v1/txn/unassign")
    unassign_keys = {
        v["properties"]["errorKey"]["const"]
        for v in unassign["responses"]["400"]["content"]["application/json"]["schema"]["allOf"][1]["anyOf"]
    }
    assert "txnNotAssigned" in unassign_keys
    assert not unassign_keys & {"userKeyNotSpecified", "txnAlreadyAssigned", "userNotFound"}

    answer = txn(app, "assign", {"submitKey": "no-such-task", "userKey": "k"})
    assert answer.status == 400
    _schema_validator(document, bad_request).check(answer.json())
    assert _schema_validator(document, bad_request).problems({"errorKey": "txnNotFound", "error": "Not found"})


def test_every_error_a_route_documents_is_in_the_table() -> None:
    for operation in doc.OPERATIONS:
        for error in operation.errors:
            doc.rendering_of(ERROR_TABLE, error)


# --- examples ------------------------------------------------------------------------------------------


def test_the_examples_are_the_demo_data_of_the_run_command() -> None:
    assert doc.EXAMPLE_ASSIGNMENT_ID == demo.WELCOME_ID
    assert doc.EXAMPLE_TASK_ID == demo.TASK_ID
    assert demo.GRACE.upn == doc.EXAMPLE_ASSIGNEE
    assert demo.GRACE.user_key == doc.EXAMPLE_ASSIGNEE_KEY
    assert demo.ALAN.upn == doc.EXAMPLE_DELEGATE
    assert doc.EXAMPLE_GROUP == demo.REVIEWERS_GROUP


def test_request_examples_are_valid_against_their_schemas(document: dict[str, Any]) -> None:
    for method, path, operation in doc.iter_operations(document):
        for content in operation.get("requestBody", {}).get("content", {}).values():
            validator = _schema_validator(document, content["schema"])
            for name, example in content.get("examples", {}).items():
                assert not validator.problems(example["value"]), f"{method} {path}, example {name}"


# --- Swagger UI ----------------------------------------------------------------------------------------


def test_docs_is_a_page_that_loads_the_vendored_swagger_ui(app: FunctionCaller) -> None:
    page = _get(app, "docs", "/docs")
    assert page.status == 200
    assert page.content_type.startswith("text/html")
    html = page.body.decode()
    assert f'src="/docs/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"' in html
    assert f'src="/docs/{INITIALIZER}"' in html
    assert "<script>" not in html, "no inline script: the page's CSP allows only the app's own files"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self' https://login.microsoftonline.com" in policy


@pytest.mark.parametrize("asset", DOCS_ASSETS)
def test_every_asset_is_served_with_its_media_type(app: FunctionCaller, asset: str) -> None:
    response = _get(app, "docs_asset", f"/docs/{asset}", route_params={"asset": asset})
    assert response.status == 200
    expected = {".js": "application/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}
    assert response.content_type.split(";")[0] == expected.get(Path(asset).suffix, "text/plain")
    if asset != INITIALIZER:
        assert response.body == (SWAGGER_UI_DIR / asset).read_bytes()


def test_an_unknown_asset_is_a_404_problem(app: FunctionCaller) -> None:
    for name in ("index.html", "..", "swagger-ui-bundle.js.map", "README.md"):
        assert_problem(_get(app, "docs_asset", f"/docs/{name}", route_params={"asset": name}), 404, "notFound")


def test_the_vendored_files_are_the_pinned_packages() -> None:
    pinned = json.loads((REPO_ROOT / "emulators" / "package.json").read_text())["dependencies"]["swagger-ui-dist"]
    installed = json.loads((PACKAGE / "package.json").read_text())["version"]
    assert pinned == installed == SWAGGER_UI_VERSION, "npm ci --prefix emulators, then copy as static/swagger-ui says"
    vendored = {path.name for path in SWAGGER_UI_DIR.iterdir()} - {"README.md"}
    assert vendored == set(DOCS_ASSETS) - {INITIALIZER}
    for name in sorted(vendored):
        assert (SWAGGER_UI_DIR / name).read_bytes() == (PACKAGE / name).read_bytes(), name


def test_the_vendored_files_are_deployed() -> None:
    ignored = {line.strip().strip("/") for line in (REPO_ROOT / ".funcignore").read_text().splitlines()}
    assert "static" not in ignored
    assert SWAGGER_UI_DIR.is_relative_to(REPO_ROOT)
