"""GET /openapi.json (the OpenAPI document) and GET /docs (Swagger UI rendering it), both anonymous.

The document is built by `core.openapi` from the models and the one error table; the security scheme names
this deployment's tenant and client id, read from the settings at request time. Swagger UI is the pinned
`swagger-ui-dist` (emulators/package.json) whose needed files are committed under static/swagger-ui: Azure's
remote build installs Python packages only, so anything the app serves must be in the deployed folder.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import azure.functions as func

from core.bootstrap import get_runtime
from core.errors import NotFound
from core.openapi import DOCS_ASSETS, api_identity, build_document
from triggers.http_errors import ERROR_TABLE
from triggers.http_support import http_function

bp = func.Blueprint()

# The version of swagger-ui-dist the files under static/swagger-ui come from (emulators/package.json pins it).
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
INITIALIZER = "swagger-initializer.js"
_MEDIA_TYPES = {".js": "application/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}
# Files that never change for a version are cached by browsers for a day; the page and its initializer,
# which name this deployment's settings, are revalidated every time.
_CACHE_ASSET = "public, max-age=86400"
_NO_CACHE = "no-cache"
# Swagger UI sets inline styles; everything else comes from this app, and tokens from Entra ID.
_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self' https://login.microsoftonline.com; "
    "form-action 'self' https://login.microsoftonline.com; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": _NO_CACHE,
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Assignments API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
<link rel="stylesheet" href="/docs/swagger-ui.css?v={SWAGGER_UI_VERSION}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script src="/docs/{INITIALIZER}"></script>
</body>
</html>
"""


def _document() -> dict[str, object]:
    settings = get_runtime().settings
    return build_document(ERROR_TABLE, audiences=settings.auth_audiences, tenant_ids=settings.auth_tenant_ids)


def initializer_script() -> str:
    """Starts Swagger UI on /openapi.json, ready to sign in with PKCE as this deployment's API app."""
    identity = api_identity(get_runtime().settings.auth_audiences)
    config = {"clientId": identity.client_id, "scopes": [identity.user_scope]}
    return (
        "window.addEventListener('load', function () {\n"
        f"  var config = {json.dumps(config)};\n"
        "  window.ui = SwaggerUIBundle({\n"
        "    url: '/openapi.json',\n"
        "    dom_id: '#swagger-ui',\n"
        "    deepLinking: true,\n"
        "    presets: [SwaggerUIBundle.presets.apis],\n"
        "    layout: 'BaseLayout',\n"
        "    oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect.html'\n"
        "  });\n"
        "  window.ui.initOAuth({clientId: config.clientId, scopes: config.scopes,"
        " usePkceWithAuthorizationCodeGrant: true});\n"
        "});\n"
    )


@lru_cache(maxsize=len(DOCS_ASSETS))
def _vendored(name: str) -> bytes:
    return (SWAGGER_UI_DIR / name).read_bytes()


def media_type_of(name: str) -> str:
    return _MEDIA_TYPES.get(Path(name).suffix, "text/plain")


@http_function(bp, "openapi_document", func.HttpMethod.GET, "openapi.json")
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(_document()), status_code=200, mimetype="application/json", headers={"Cache-Control": _NO_CACHE}
    )


@http_function(bp, "docs", func.HttpMethod.GET, "docs")
def docs(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(PAGE, status_code=200, mimetype="text/html", headers=dict(_PAGE_HEADERS))


@http_function(bp, "docs_asset", func.HttpMethod.GET, "docs/{asset}")
def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = str(req.route_params.get("asset", ""))
    if name not in DOCS_ASSETS:
        raise NotFound(f"/docs has no file {name}")
    if name == INITIALIZER:
        body, cache = initializer_script().encode(), _NO_CACHE
    else:
        body, cache = _vendored(name), _CACHE_ASSET
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
    return func.HttpResponse(body, status_code=200, mimetype=media_type_of(name), headers=headers)
