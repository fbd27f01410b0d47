"""`func start` stays configured: host.json is valid, and local.settings.sample.json holds every setting the
bindings name and the code reads. Core Tools cannot run here (FACTS.md), so these checks stand in for it."""

import ast
import json
import re

from core.settings import Settings
from localhost.app_settings import setting_name
from localhost.dev_signer import DEV_AUDIENCE, DEV_TENANT_ID
from localhost.indexing import index_app
from localhost.services import REPO_ROOT

SAMPLE = json.loads((REPO_ROOT / "local.settings.sample.json").read_text())
SAMPLE_VALUES: dict[str, str] = SAMPLE["Values"]
PLATFORM_PREFIXES = ("WEBSITE_", "FUNCTIONS_")
# The operating system's variables, not app settings: the run command and scripts/token read XDG_RUNTIME_DIR to find
# where the development signer is shared (localhost/shared_signer.py); the Cosmos client's transport reads the CA
# bundle variables `requests` honours, once (core/cosmos/client.py).
OS_VARIABLES = {"XDG_RUNTIME_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
CODE_DIRS = ("core", "triggers", "localhost")
# The settings the API rules name for bindings (`%NAME%`), whether or not a function binds them yet: the host has
# no default for them, so the sample (like infra/) must give each a value.
CONTRACT_BINDING_SETTINGS = {
    "COSMOS_ASSIGNMENTS_CONTAINER",
    "COSMOS_LEASES_CONTAINER",
    "COSMOS_VIEWS_CONTAINER",
    "NOTIFICATIONS_QUEUE",
    "SWEEP_SCHEDULE",
}


def test_host_json_is_valid_for_the_v4_host() -> None:
    host = json.loads((REPO_ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_the_sample_is_a_python_local_settings_file() -> None:
    assert SAMPLE["IsEncrypted"] is False
    assert SAMPLE_VALUES["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert SAMPLE["Host"]["LocalHttpPort"] == 7071
    assert all(isinstance(value, str) for value in SAMPLE_VALUES.values())


def binding_settings() -> set[str]:
    """Every %SETTING% in function_app's bindings, and every setting a binding's connection names."""
    names: set[str] = set()
    for function in index_app("function_app"):
        for binding in function.raw_bindings:
            for key, value in binding.items():
                if isinstance(value, str):
                    names |= set(re.findall(r"%([^%]+)%", value))
                if key.lower().endswith("connection") and value:
                    names.add(str(value))
            if binding["type"] in ("queue", "queueTrigger", "blob", "blobTrigger") and not binding.get("connection"):
                names.add("AzureWebJobsStorage")
    return names


def environment_reads() -> set[str]:
    """Names read with `os.environ[...]`, `os.environ.get(...)`, `os.getenv(...)` or an `environ` mapping."""
    names: set[str] = set()
    files = [REPO_ROOT / "function_app.py", *(p for d in CODE_DIRS for p in (REPO_ROOT / d).rglob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            target: ast.expr | None = None
            if isinstance(node, ast.Subscript) and _is_environ(node.value):
                target = node.slice
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                if isinstance(func, ast.Attribute) and (
                    (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
                ):
                    target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                names.add(target.value)
    return names


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def test_every_setting_the_bindings_and_the_code_read_is_in_the_sample() -> None:
    settings_fields = {setting_name(field) for field in Settings.model_fields}
    needed = settings_fields | binding_settings() | environment_reads()
    missing = sorted(
        name for name in needed - OS_VARIABLES if name not in SAMPLE_VALUES and not name.startswith(PLATFORM_PREFIXES)
    )
    assert missing == []


def test_every_binding_setting_has_a_value_in_the_sample() -> None:
    """A `%NAME%` that resolves to nothing stops the function from loading, under `func start` as on Azure."""
    for name in CONTRACT_BINDING_SETTINGS | binding_settings():
        assert SAMPLE_VALUES.get(name), f"local.settings.sample.json must set {name}"


def test_the_scan_sees_the_local_hosts_own_settings() -> None:
    assert {"PORT", "LOCAL_DEV_SIGNER", "COSMOS_ENDPOINT", "AzureWebJobsStorage"} <= environment_reads()


def test_the_sample_trusts_the_same_tenant_and_audience_as_the_development_signer() -> None:
    assert SAMPLE_VALUES["AUTH_TENANT_ID"] == DEV_TENANT_ID
    assert SAMPLE_VALUES["AUTH_AUDIENCE"] == DEV_AUDIENCE
    assert SAMPLE_VALUES["LOCAL_DEV_SIGNER"] == "0"  # func start never trusts it


def test_the_local_host_and_local_settings_are_never_deployed() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".funcignore").read_text().splitlines()}
    assert {"localhost", "local.settings.json", "tests", "emulators", "scripts"} <= ignored
