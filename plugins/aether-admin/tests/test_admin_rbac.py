"""The RBAC matrix: every role x every endpoint x a name inside and outside its globs.

The expected answer comes from the policy written out below by hand, not from the
implementation: admin may do everything; editor reads and writes configs and schemas;
viewer reads them; the custom ``billing`` role may do anything to configs under
``billing/*`` and read schemas there, except under ``billing/vault*`` (a deny rule,
which wins); a user with no role may do nothing.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from admin_helpers import assert_problem
from litestar.testing import TestClient

Headers = dict[str, str]

POLICY: dict[str, list[tuple[str, str, str]]] = {  # role -> [(effect, action, name glob)]
    "admin": [("allow", "*", "*")],
    "ed": [("allow", a, "*") for a in ("configs:read", "configs:write", "configs:delete",
                                        "schemas:read", "schemas:write")],
    "vi": [("allow", "configs:read", "*"), ("allow", "schemas:read", "*")],
    "bill": [("allow", "configs:*", "billing/*"), ("allow", "schemas:read", "billing/*"),
             ("deny", "*", "billing/vault*")],
    "nobody": [],
}


def expected(user: str, action: str, name: str) -> bool:
    rules = [r for r in POLICY[user] if fnmatchcase(action, r[1]) and fnmatchcase(name, r[2])]
    return bool(rules) and all(effect == "allow" for effect, _, _ in rules)


#: (action, method, path template, body) — {n} is the resource's name.
ENDPOINTS: list[tuple[str, str, str, Any]] = [
    ("configs:read", "GET", "/configs/{n}", None),
    ("configs:read", "GET", "/configs/{n}?version=1", None),
    ("configs:read", "GET", "/configs/{n}/versions", None),
    ("configs:read", "GET", "/configs/{n}/diff?from=1&to=2", None),
    ("configs:write", "PUT", "/configs/{n}", {"value": {"v": 3}}),
    ("configs:write", "POST", "/configs", {"name": "{n}-new", "value": 1}),
    ("configs:write", "POST", "/configs/{n}/rollback", {"to_version": 1}),
    ("configs:delete", "DELETE", "/configs/{n}", None),
    ("schemas:read", "GET", "/schemas/{n}", None),
    ("schemas:write", "PUT", "/schemas/{n}", {"schema": {"type": "object"}, "bind": []}),
    ("schemas:write", "POST", "/schemas/{n}/check", {"schema": {"type": "object"}}),
    ("users:admin", "GET", "/users", None),
    ("users:admin", "POST", "/users", {"username": "u-{i}", "password": "password-{i}"}),
    ("users:admin", "PUT", "/users/nobody/roles", {"roles": []}),
]
PLACES = ["billing/app", "other/app", "billing/vault"]


def _fill(template: Any, name: str, i: int) -> Any:
    if isinstance(template, str):
        return template.replace("{n}", name).replace("{i}", str(i))
    if isinstance(template, dict):
        return {k: _fill(v, name, i) for k, v in template.items()}
    return template


def test_rbac_matrix(api: TestClient[Any], team: dict[str, Headers]) -> None:
    admin = team["admin"]
    checked = denied = 0
    for user in POLICY:
        for place in PLACES:
            # One config (two versions) and one schema per cell row; the endpoints run in
            # an order where each finds what it needs (DELETE comes after the reads).
            name = f"{place}-{user}"
            for value in ({"v": 1}, {"v": 2}):
                api.put(f"/configs/{name}", headers=admin, json={"value": value})
            api.put(f"/schemas/{name}", headers=admin, json={"schema": {}, "bind": []})
            for action, method, path, body in ENDPOINTS:
                resource = name if action != "users:admin" else ""
                response = api.request(method, _fill(path, name, checked),
                                       json=_fill(body, name, checked), headers=team[user])
                may = expected(user, action, resource)
                if may:
                    assert response.status_code in (200, 201, 204), (
                        user, method, path, name, response.text)
                else:
                    body_json = assert_problem(response, 403)
                    assert action in body_json["detail"], body_json
                    denied += 1
                checked += 1
    assert checked == len(POLICY) * len(PLACES) * len(ENDPOINTS)
    assert 0 < denied < checked


def test_listing_shows_only_what_the_caller_may_read(
    api: TestClient[Any], team: dict[str, Headers]
) -> None:
    for name in ("billing/app", "billing/vault-key", "other/app"):
        api.put(f"/configs/{name}", headers=team["admin"], json={"value": 1})
        api.put(f"/schemas/{name}", headers=team["admin"], json={"schema": {}, "bind": []})
    seen = {user: [c["name"] for c in api.get("/configs", headers=h).json()["items"]]
            for user, h in team.items()}
    assert seen["admin"] == seen["vi"] == ["billing/app", "billing/vault-key", "other/app"]
    assert seen["bill"] == ["billing/app"]
    assert seen["nobody"] == []
    schemas = [s["name"] for s in api.get("/schemas", headers=team["bill"]).json()["items"]]
    assert schemas == ["billing/app"]
