"""Schemathesis extensions for .ci/schemathesis (loaded with --pre-run st_scope).

- Every generated call goes to the test's own tenant: `{t}` is pinned to the
  tenant the script creates (ST_TENANT), so the calls reach the handlers
  instead of stopping at 401/404 on a random slug.
- `refused_outside_scope`: a key without the needed scope never succeeds.
  ST_SCOPE=login names the key's own paths (the delegated sign-in calls),
  where it may succeed.
"""
import os

import schemathesis

TENANT = os.environ.get("ST_TENANT", "acme")
OWN_PATHS = {"login": ("/login-requests/", "/subjects/")}.get(os.environ.get("ST_SCOPE", ""), ())


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if path_parameters is not None and "t" in path_parameters:
        path_parameters["t"] = TENANT
    return path_parameters


def _http_visible(value):
    return all(c == "\t" or " " <= c <= "~" for c in str(value))


@schemathesis.hook
def filter_headers(context, headers):
    # A header value with control or non-ASCII characters is refused by the
    # HTTP layer (hyper answers a bare 400 before any route runs), so such
    # cases test the HTTP parser, not the API and its schema.
    return headers is None or all(_http_visible(v) for v in headers.values())


@schemathesis.check
def refused_outside_scope(response, case):
    if response.request.url.endswith("/openapi.json"):
        return
    if any(p in case.path for p in OWN_PATHS):
        return
    assert response.status_code not in range(200, 300), (
        f"{case.method} {case.path} succeeded outside the key's scope: {response.status_code}"
    )
