"""infra/ agrees with the code and with Azure's naming rules, and holds no keys.

The Bicep CLI cannot be installed where these tests run, so main.bicep is read as text: its containers, queues
and app settings are compared with core/, and its resource names are built by evaluating main.bicep's own
expressions (a small evaluator of the Bicep subset they use, with ARM's uniqueString) and checked against the
rules Azure enforces.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.cosmos.client import (
    ASSIGNMENTS_PARTITION_KEY,
    LEASES_PARTITION_KEY,
    USERS_PARTITION_KEY,
    VIEWS_PARTITION_KEY,
)
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BICEP = (ROOT / "infra" / "main.bicep").read_text()
PARAMETERS = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
# Only the local host reads these; they never reach Azure.
LOCAL_ONLY = {"PORT", "LOCAL_DEV_SIGNER"}
# Keys and connection strings are what the deployment must not have.
FORBIDDEN_IN_AZURE = {"COSMOS_KEY", "AzureWebJobsStorage", "CosmosDB"}
# Set for the platform and the SDKs, not read by our code: telemetry authentication, the identity-based forms of
# the `CosmosDB` and `AzureWebJobsStorage` connections, and the identity DefaultAzureCredential uses.
PLATFORM = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "CosmosDB__accountEndpoint",
    "CosmosDB__credential",
    "CosmosDB__clientId",
    "AZURE_CLIENT_ID",
}

# --- reading main.bicep ---------------------------------------------------------------------------------


def _block(opening: str) -> str:
    """The body of a multi-line `var x = {` or `var x = [` declaration, up to its closing line."""
    start = BICEP.index(opening + "\n") + len(opening) + 1
    closing = "\n}" if opening.endswith("{") else "\n]"
    return BICEP[start : BICEP.index(closing, start)]


def _object(opening: str) -> dict[str, str]:
    """`key: expression` lines of a multi-line object, each expression as text."""
    return dict(re.findall(r"^  ([A-Za-z_][A-Za-z0-9_]*): (.+?)(?: //.*)?$", _block(opening), flags=re.MULTILINE))


def _vars() -> dict[str, str]:
    """Single-line `var name = expression` declarations."""
    return dict(re.findall(r"^var (\w+) = (.+?)(?: //.*)?$", BICEP, flags=re.MULTILINE))


def _param_defaults() -> dict[str, str]:
    return dict(re.findall(r"^param (\w+) \w+ = (.+)$", BICEP, flags=re.MULTILINE))


def _params() -> set[str]:
    return set(re.findall(r"^param (\w+) ", BICEP, flags=re.MULTILINE))


def _bicep_containers() -> dict[str, tuple[str, str]]:
    """Container name → (partition key path, the rest of its definition)."""
    rows = re.findall(r"^  (\{ name: '([^']+)', paths: \['([^']+)'\].*\})$", _block("var containers = ["), re.M)
    return {name: (path, row) for row, name, path in rows}


def _bicep_app_settings() -> dict[str, str]:
    return _object("var appSettings = {")


# --- a small evaluator for the Bicep expressions main.bicep names things with -------------------------


class Unknown(Exception):
    """The expression needs a value known only during a deployment (a module output)."""


def _murmur64(data: bytes) -> int:
    """The 64-bit MurmurHash variant ARM's uniqueString uses: two 32-bit lanes mixed together."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    def fmix(h: int) -> int:
        h = ((h ^ (h >> 16)) * 0x85EBCA6B) & mask
        h = ((h ^ (h >> 13)) * 0xC2B2AE35) & mask
        return h ^ (h >> 16)

    c1, c2 = 0xAB0E9789, 0x239B961B
    h1 = h2 = 0
    body = len(data) - len(data) % 8
    for i in range(0, body, 8):
        k1 = int.from_bytes(data[i : i + 4], "little")
        k2 = int.from_bytes(data[i + 4 : i + 8], "little")
        h1 = (rotl(h1 ^ (rotl((k1 * c2) & mask, 15) * c1 & mask), 19) + h2) & mask
        h1 = (h1 * 5 + 0x561CCD1B) & mask
        h2 = (rotl(h2 ^ (rotl((k2 * c1) & mask, 17) * c2 & mask), 13) + h1) & mask
        h2 = (h2 * 5 + 0x0BCAA747) & mask
    tail = data[body:]
    if tail:
        h1 ^= rotl((int.from_bytes(tail[:4], "little") * c2) & mask, 15) * c1 & mask
        if len(tail) > 4:
            h2 ^= rotl((int.from_bytes(tail[4:], "little") * c1) & mask, 17) * c2 & mask
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & mask
    h2 = (h2 + h1) & mask
    h1, h2 = fmix(h1), fmix(h2)
    h1 = (h1 + h2) & mask
    h2 = (h2 + h1) & mask
    return (h2 << 32) | h1


def unique_string(*values: str) -> str:
    """ARM's uniqueString: the values joined with '-', hashed, as 13 base32 characters (a-z, 2-7)."""
    bits = _murmur64("-".join(values).encode()) << 1  # 65 bits: 13 characters of 5 bits, most significant first
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[(bits >> shift) & 31] for shift in range(60, -1, -5))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toLower": lambda s: s.lower(),
    "uniqueString": unique_string,
    "empty": lambda v: len(v) == 0,
    "take": lambda s, n: s[:n],
    "replace": lambda s, old, new: s.replace(old, new),
    "string": str,
}
TOKEN = re.compile(r"\s*(?:(?P<number>\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>[().,?:!]))")


def _string_end(text: str, start: int) -> int:
    """The index after the string literal opening at `start`, whose `${…}` may hold strings and braces."""
    position, depth = start + 1, 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if depth == 0 and char == "'":
            return position + 1
        if depth == 0 and text.startswith("${", position):
            depth, position = 1, position + 2
            continue
        if depth and char == "'":
            position = _string_end(text, position)
            continue
        depth += {"{": 1, "}": -1}.get(char, 0) if depth else 0
        position += 1
    raise Unknown(f"unterminated string in {text!r}")


def _interpolations(body: str) -> list[tuple[bool, str]]:
    """A string literal's body as (is_expression, text) parts: `st${toLower('X')}` → st, toLower('X')."""
    parts: list[tuple[bool, str]] = []
    literal, position = "", 0
    while position < len(body):
        if body.startswith("${", position):
            cursor, depth = position + 2, 1
            while depth:
                if body[cursor] == "'":
                    cursor = _string_end(body, cursor)
                    continue
                depth += {"{": 1, "}": -1}.get(body[cursor], 0)
                cursor += 1
            parts += [(False, literal), (True, body[position + 2 : cursor - 1])]
            literal, position = "", cursor
        elif body[position] == "\\":
            literal, position = literal + body[position + 1], position + 2
        else:
            literal, position = literal + body[position], position + 1
    return [*parts, (False, literal)]


class Evaluator:
    """Evaluates `'st${token}'`, `toLower(uniqueString(subscription().id, name))`, `empty(x) ? a : b`, …"""

    def __init__(self, scope: dict[str, Any], expressions: dict[str, str]) -> None:
        self.scope = scope
        self.expressions = expressions

    def value(self, name: str) -> Any:
        if name not in self.scope:
            if name not in self.expressions:
                raise Unknown(name)
            self.scope[name] = self.evaluate(self.expressions[name])
        return self.scope[name]

    def evaluate(self, text: str) -> Any:
        tokens = self._tokens(text)
        result, rest = self._ternary(tokens)
        assert not rest, f"cannot read the end of {text!r}: {rest}"
        return result

    def _tokens(self, text: str) -> list[tuple[str, str]]:
        tokens, position = [], 0
        while position < len(text.rstrip()):
            stripped = len(text) - len(text[position:].lstrip())
            if text[stripped] == "'":
                end = _string_end(text, stripped)
                tokens.append(("string", text[stripped:end]))
                position = end
                continue
            match = TOKEN.match(text, position)
            if not match or match.lastgroup is None:
                raise Unknown(f"cannot read {text[position:]!r}")
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
            position = match.end()
        return tokens

    def _ternary(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        condition, rest = self._unary(tokens)
        if rest[:1] == [("op", "?")]:
            when_true, rest = self._ternary(rest[1:])
            assert rest[:1] == [("op", ":")]
            when_false, rest = self._ternary(rest[1:])
            return (when_true if condition else when_false), rest
        return condition, rest

    def _unary(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        if tokens[:1] == [("op", "!")]:
            value, rest = self._unary(tokens[1:])
            return not value, rest
        return self._postfix(tokens)

    def _postfix(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        kind, text = tokens[0]
        rest = tokens[1:]
        if kind == "string":
            value: Any = self._string(text[1:-1])
        elif kind == "number":
            value = int(text)
        elif kind == "name" and rest[:1] == [("op", "(")]:
            arguments, rest = self._arguments(rest[1:])
            if text == "subscription":
                value = {"id": self.value("subscription().id")}
            elif text == "tenant":
                value = {"tenantId": self.value("tenant().tenantId")}
            elif text in FUNCTIONS:
                value = FUNCTIONS[text](*arguments)
            else:
                raise Unknown(f"{text}()")
        elif kind == "name":
            value = self.value(text)
        elif text == "(":
            value, rest = self._ternary(rest)
            rest = rest[1:]
        else:
            raise Unknown(text)
        while rest[:1] == [("op", ".")]:
            value, rest = value[rest[1][1]], rest[2:]
        return value, rest

    def _arguments(self, tokens: list[tuple[str, str]]) -> tuple[list[Any], list[tuple[str, str]]]:
        arguments: list[Any] = []
        while tokens[:1] != [("op", ")")]:
            argument, tokens = self._ternary(tokens)
            arguments.append(argument)
            if tokens[:1] == [("op", ",")]:
                tokens = tokens[1:]
        return arguments, tokens[1:]

    def _string(self, body: str) -> str:
        return "".join(str(self.evaluate(text)) if expression else text for expression, text in _interpolations(body))


SUBSCRIPTION_ID = "/subscriptions/3f2b9d8e-1c4a-4e6b-9f0d-7a5c2e8b1d43"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# Mixed case, hyphens, periods and underscores, and azd's longest: 64 characters.
LONG_ENVIRONMENT = "Contoso-Assignments_Prod.WestEurope-Team42-BlueGreen-Canary-0001"


def evaluator(environment_name: str, location: str = "westeurope", **parameters: str) -> Evaluator:
    scope: dict[str, Any] = {
        "subscription().id": SUBSCRIPTION_ID,
        "tenant().tenantId": TENANT_ID,
        "environmentName": environment_name,
        "location": location,
        "authClientId": "4a1bd3f2-6c0e-4d8b-a9e5-3b7f1c2d8e60",
    }
    expressions = {**_param_defaults(), **_vars()}
    for name, value in parameters.items():
        scope[name] = value
    return Evaluator(scope, expressions)


def resource_names(environment_name: str, location: str = "westeurope") -> dict[str, str]:
    names = evaluator(environment_name, location)
    return {key: names.evaluate(expression) for key, expression in _object("var names = {").items()}


# Azure's naming rules (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules).
NAMING_RULES: dict[str, tuple[int, int, str]] = {
    "resourceGroup": (1, 90, r"[\w().-]*[\w()-]"),  # letters, digits, _ ( ) - . ; not ending with .
    "identity": (3, 128, r"[A-Za-z0-9][A-Za-z0-9_-]*"),
    "logAnalytics": (4, 63, r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]"),
    "appInsights": (1, 260, r"[^%&\\?/]*[^%&\\?/. ]"),
    "storage": (3, 24, r"[a-z0-9]+"),
    "cosmos": (3, 44, r"[a-z0-9][a-z0-9-]*[a-z0-9]"),
    "plan": (1, 60, r"[A-Za-z0-9-]+"),
    "functionApp": (2, 60, r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]"),
    "deploymentContainer": (3, 63, r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]"),  # a blob container
}
STORAGE_QUEUE_RULE = (3, 63, r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]")


def _follows(name: str, rule: tuple[int, int, str]) -> bool:
    shortest, longest, pattern = rule
    return shortest <= len(name) <= longest and re.fullmatch(pattern, name) is not None


# --- uniqueString --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Computed by ARM's own expression library (Azure.Deployments.Expression), as published in a test.
        (
            (
                "/subscriptions/31e9f9a0-9fd2-4294-a0a3-0101246d9700/resourceGroups/rg-modm201-20230913120256"
                "/providers/Microsoft.Compute/virtualMachines/bobjacmodm201",
            ),
            "yvjxno3je5on2",
        ),
        (("test",), "rbgf3xv4ufgzg"),
        (("hello", "world"), "a7wkljktk6wne"),
    ],
)
def test_unique_string_is_arms(values: tuple[str, ...], expected: str) -> None:
    assert unique_string(*values) == expected


def test_the_resource_token_is_13_lowercase_characters_and_case_sensitive() -> None:
    token = evaluator("Prod").value("resourceToken")
    assert re.fullmatch(r"[a-z2-7]{13}", token)
    assert token != evaluator("prod").value("resourceToken")
    assert token != evaluator("Prod", "eastus").value("resourceToken")


# --- names ---------------------------------------------------------------------------------------------


def test_names_are_built_from_the_resource_token() -> None:
    names = resource_names("Prod")
    token = unique_string(SUBSCRIPTION_ID, "Prod", "westeurope")
    assert names["resourceGroup"] == "rg-Prod"
    assert names["storage"] == f"st{token}"
    assert names["cosmos"] == f"cosmos-{token}"
    assert names["functionApp"] == f"func-api-{token}"
    assert set(names) == set(NAMING_RULES)


@pytest.mark.parametrize("environment_name", ["Prod", "a", LONG_ENVIRONMENT, "UPPER-CASE-ENV"])
@pytest.mark.parametrize("resource", sorted(NAMING_RULES))
def test_every_name_follows_azures_rule(environment_name: str, resource: str) -> None:
    name = resource_names(environment_name)[resource]
    assert _follows(name, NAMING_RULES[resource]), f"{resource} name {name!r} breaks {NAMING_RULES[resource]}"


def test_the_environment_name_is_bounded_as_azd_bounds_it() -> None:
    assert "@maxLength(64)\n@description" in BICEP.split("param environmentName")[0][-200:]
    assert len(LONG_ENVIRONMENT) == 64


def test_a_named_resource_group_is_taken_as_given() -> None:
    names = evaluator("Prod", resourceGroupName="rg-assignments-shared")
    assert names.evaluate(_object("var names = {")["resourceGroup"]) == "rg-assignments-shared"


def test_the_deployment_is_at_subscription_scope_into_a_tagged_resource_group() -> None:
    assert "targetScope = 'subscription'" in BICEP
    assert "var tags = { 'azd-env-name': environmentName }" in BICEP
    resource_group = BICEP.split("resource rg 'Microsoft.Resources/resourceGroups@")[1].split("\n}")[0]
    assert "tags: tags" in resource_group
    for module in re.findall(r"^module (\w+) ", BICEP, flags=re.MULTILINE):
        body = BICEP.split(f"module {module} ")[1].split("\n}")[0]
        assert "scope: rg" in body, f"module {module} is not deployed into the resource group"
        assert "tags:" in body, f"module {module} is not tagged"


def test_modules_are_azure_verified_modules_at_fixed_versions() -> None:
    modules = re.findall(r"^module \w+ '([^']+)'", BICEP, flags=re.MULTILINE)
    assert modules
    for module in modules:
        assert re.fullmatch(r"br/public:avm/res/[a-z-]+/[a-z-]+:\d+\.\d+\.\d+", module), module


# --- agreement with the code ---------------------------------------------------------------------------


def test_containers_and_partition_keys_agree_with_the_store() -> None:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    containers = _bicep_containers()
    assert {name: path for name, (path, _) in containers.items()} == {
        defaults["cosmos_assignments_container"]: ASSIGNMENTS_PARTITION_KEY,
        defaults["cosmos_users_container"]: USERS_PARTITION_KEY,
        defaults["cosmos_leases_container"]: LEASES_PARTITION_KEY,
        defaults["cosmos_views_container"]: VIEWS_PARTITION_KEY,
    }
    # TTL is on (never expiring by default) where docs/api-rules.md puts TTLs: idempotency records and views.
    assert "defaultTtl: -1" in containers[defaults["cosmos_assignments_container"]][1]
    assert "defaultTtl: -1" in containers[defaults["cosmos_views_container"]][1]


def test_the_app_settings_name_the_containers_infra_creates() -> None:
    settings = _bicep_app_settings()
    names = evaluator("Prod")
    created = set(_bicep_containers())
    for setting in ("COSMOS_ASSIGNMENTS_CONTAINER", "COSMOS_USERS_CONTAINER", "COSMOS_LEASES_CONTAINER"):
        assert names.evaluate(settings[setting]) in created
    assert names.evaluate(settings["COSMOS_VIEWS_CONTAINER"]) in created
    assert names.evaluate(settings["COSMOS_DATABASE"]) == names.value("databaseName")


def test_the_queues_the_app_names_exist_with_their_poison_queues() -> None:
    names = evaluator("Prod")
    queues = {names.evaluate(name) for name in re.findall(r"\{ name: (.+) \}", _block("var queues = ["))}
    named = {
        names.evaluate(_bicep_app_settings()[setting]) for setting in ("NOTIFICATIONS_QUEUE", "CHANGES_RETRY_QUEUE")
    }
    assert queues == named | {f"{queue}-poison" for queue in named}
    assert all(_follows(name, STORAGE_QUEUE_RULE) for name in queues)
    assert "queueServices: { queues: queues }" in BICEP


def test_every_setting_the_code_reads_is_configured_in_azure() -> None:
    configured = set(_bicep_app_settings())
    names = {str(field.validation_alias) for field in Settings.model_fields.values()}
    missing = names - configured - LOCAL_ONLY - FORBIDDEN_IN_AZURE - {"AUTH_ISSUERS"}
    assert not missing, f"settings the code reads but infra/main.bicep does not set: {missing}"
    assert "CosmosDB__accountEndpoint" in configured


def test_settings_azure_gets_are_valid_and_the_bound_ones_match_the_code() -> None:
    """Literal values (and those built from parameters' defaults) pass Settings' own validation."""
    names = evaluator("Prod")
    values: dict[str, str] = {}
    for setting, expression in _bicep_app_settings().items():
        try:
            values[setting] = str(names.evaluate(expression))
        except Unknown:
            continue  # a module output, known during the deployment only
    assert {"NOTIFICATIONS_QUEUE", "SWEEP_SCHEDULE", "COSMOS_VIEWS_CONTAINER", "AUTH_AUDIENCE"} <= set(values)
    settings = Settings.model_validate({"COSMOS_ENDPOINT": "https://x.documents.azure.com/", **values})
    defaults = Settings.model_validate({"COSMOS_ENDPOINT": "x", "AUTH_TENANT_ID": "t", "AUTH_AUDIENCE": "a"})
    for field in ("notifications_queue", "sweep_schedule", "cosmos_views_container", "sweep_max_seconds"):
        assert getattr(settings, field) == getattr(defaults, field), field


def test_the_api_accepts_both_audience_forms_entra_issues() -> None:
    client_id = "4a1bd3f2-6c0e-4d8b-a9e5-3b7f1c2d8e60"
    audience = evaluator("Prod", authAudiences="").evaluate(_bicep_app_settings()["AUTH_AUDIENCE"])
    settings = Settings.model_validate({"COSMOS_ENDPOINT": "x", "AUTH_TENANT_ID": "t", "AUTH_AUDIENCE": audience})
    assert settings.auth_audiences == [f"api://{client_id}", client_id]
    chosen = evaluator("Prod", authAudiences="https://api.contoso.com").evaluate(_bicep_app_settings()["AUTH_AUDIENCE"])
    assert chosen == "https://api.contoso.com"
    tenant = evaluator("Prod", authTenantIds="").evaluate(_bicep_app_settings()["AUTH_TENANT_ID"])
    assert tenant == TENANT_ID


def test_azure_gets_no_keys_or_connection_strings() -> None:
    assert not set(_bicep_app_settings()) & FORBIDDEN_IN_AZURE
    assert "disableLocalAuthentication: true" in BICEP
    assert "allowSharedKeyAccess: false" in BICEP
    assert "disableLocalAuth: true" in BICEP  # Application Insights: Entra-authenticated telemetry only
    assert not re.search(r"listKeys|listConnectionStrings|primaryKey|AccountKey|InstrumentationKey=", BICEP)


def test_every_setting_in_azure_is_known_locally() -> None:
    unknown = set(_bicep_app_settings()) - set(SAMPLE) - PLATFORM
    assert not unknown, f"infra sets settings missing from local.settings.sample.json: {unknown}"


def test_the_app_runs_as_the_user_assigned_identity_everywhere() -> None:
    settings = _bicep_app_settings()
    for connection in ("AzureWebJobsStorage", "CosmosDB"):
        assert settings[f"{connection}__credential"] == "'managedidentity'"
        assert settings[f"{connection}__clientId"] == "identity.outputs.clientId"
    assert settings["AZURE_CLIENT_ID"] == "identity.outputs.clientId"
    assert (
        "ClientId=${identity.outputs.clientId};Authorization=AAD"
        in settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    )
    assert "managedIdentities: { userAssignedResourceIds: [identity.outputs.resourceId] }" in BICEP
    assert "type: 'UserAssignedIdentity'" in BICEP  # the deployment package is read as the identity too


def test_role_assignments_exist_before_the_app_and_include_the_developer() -> None:
    """The modules that grant roles are the ones whose outputs the app is built from: ARM finishes them first."""
    app = BICEP.split("module app ")[1]
    settings = " ".join(_bicep_app_settings().values())
    for module in ("storage", "cosmos", "insights"):
        body = BICEP.split(f"module {module} ")[1].split("\n}")[0]
        assert "identity.outputs.principalId" in body, f"{module} grants the app's identity nothing"
        assert "principalId: principalId" in body, f"{module} grants the developer nothing"
        assert f"{module}.outputs." in settings + app, f"the app does not wait for {module}'s role assignments"


# --- parameters and azd --------------------------------------------------------------------------------


def test_every_required_parameter_comes_from_the_azd_environment() -> None:
    required = _params() - set(_param_defaults())
    assert required <= set(PARAMETERS), f"azd would prompt for {required - set(PARAMETERS)}"
    assert set(PARAMETERS) <= _params()
    assert PARAMETERS["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert PARAMETERS["authClientId"]["value"] == "${AUTH_CLIENT_ID}"


def test_azure_yaml_runs_the_postprovision_hook() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text()
    assert "host: function" in azure_yaml
    assert "run: infra/hooks/postprovision.sh" in azure_yaml
    hook = ROOT / "infra" / "hooks" / "postprovision.sh"
    assert hook.stat().st_mode & 0o111
    outputs = set(re.findall(r"^output (\w+) ", BICEP, flags=re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z_]+):-", hook.read_text()))
    assert used - {"GRANT_RETRY_SECONDS"} <= outputs


# --- the postprovision hook ------------------------------------------------------------------------------

HOOK = ROOT / "infra" / "hooks" / "postprovision.sh"
IDENTITY = "9c3e1d2a-4b5f-4e6a-8d7c-0f1e2d3c4b5a"
GRAPH_SP = "5b1f0a2c-3d4e-4f5a-9b8c-7d6e5f4a3b2c"
# A stand-in for the Azure CLI: signed in or not, the grant present or not, POST allowed or refused.
FAKE_AZ = """#!/bin/sh
echo "az $*" >> "$CALLS"
case "$1 $2" in
  "account show") [ -n "${AZ_SIGNED_IN:-}" ] || exit 1 ;;
  "ad sp") echo "@GRAPH_SP@" ;;
  "rest --method")
    case "$3" in
      GET) echo "${AZ_GRANTED:-0}" ;;
      POST)
        case "${AZ_POST:-ok}" in
          ok) ;;
          denied) echo "ERROR: Forbidden({\\"error\\":{\\"code\\":\\"Authorization_RequestDenied\\"}})" >&2; exit 1 ;;
        esac ;;
    esac ;;
esac
""".replace("@GRAPH_SP@", GRAPH_SP)


def _run_hook(tmp_path: Path, *, az: bool = True, **env: str) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("cat", "head", "sleep"):
        found = shutil.which(tool)
        assert found
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    if az:
        (bin_dir / "az").write_text(FAKE_AZ)
        (bin_dir / "az").chmod(0o755)
    calls = tmp_path / "calls.log"
    result = subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(HOOK)],
        env={
            "PATH": str(bin_dir),
            "CALLS": str(calls),
            "GRANT_RETRY_SECONDS": "0",
            "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": IDENTITY,
            "SERVICE_API_URI": "https://func-api-x.azurewebsites.net",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, calls.read_text().splitlines() if calls.exists() else []


def test_the_hook_explains_how_to_load_users_of_the_cosmos_directory(tmp_path: Path) -> None:
    code, out, calls = _run_hook(tmp_path, DIRECTORY="cosmos")
    assert code == 0
    assert "PUT" in out
    assert "https://func-api-x.azurewebsites.net/users/" in out
    assert "Assignments.Admin" in out
    assert calls == []


def test_the_hook_grants_user_read_all_to_the_identity(tmp_path: Path) -> None:
    code, out, calls = _run_hook(tmp_path, DIRECTORY="graph", AZ_SIGNED_IN="1")
    assert code == 0
    assert "granted Microsoft Graph User.Read.All" in out
    [post] = [call for call in calls if "--method POST" in call]
    assert f"/servicePrincipals/{GRAPH_SP}/appRoleAssignedTo" in post
    assert f'"principalId": "{IDENTITY}"' in post
    assert '"appRoleId": "df021288-bdef-4463-88db-98f22de89214"' in post


def test_the_hook_does_not_grant_twice(tmp_path: Path) -> None:
    code, out, calls = _run_hook(tmp_path, DIRECTORY="graph", AZ_SIGNED_IN="1", AZ_GRANTED="1")
    assert code == 0
    assert "already holds" in out
    assert not [call for call in calls if "--method POST" in call]


@pytest.mark.parametrize(
    ("situation", "env", "reason"),
    [
        ("no az", {"NO_AZ": "1"}, "not installed"),
        ("signed out", {}, "not signed in"),
        ("not an admin", {"AZ_SIGNED_IN": "1", "AZ_POST": "denied"}, "may not grant it"),
    ],
)
def test_the_hook_prints_the_admins_command_when_it_cannot_grant(
    tmp_path: Path, situation: str, env: dict[str, str], reason: str
) -> None:
    code, out, calls = _run_hook(tmp_path, az="NO_AZ" not in env, DIRECTORY="graph", **env)
    assert code == 0, situation  # the deployment itself succeeded
    assert reason in out
    assert f'\\"principalId\\": \\"{IDENTITY}\\"' in out
    assert "appRoleAssignedTo" in out
    assert "az ad sp show --id 00000003-0000-0000-c000-000000000000" in out
    assert len([call for call in calls if "--method POST" in call]) <= 1  # a refusal is not retried
