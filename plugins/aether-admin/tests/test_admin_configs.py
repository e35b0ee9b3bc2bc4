"""/configs and /schemas through Litestar's test client: good paths and bad ones."""

from __future__ import annotations

from typing import Any

from admin_helpers import assert_problem, make_app
from litestar.testing import TestClient

Headers = dict[str, str]


def test_create_read_update_with_if_match(api: TestClient[Any], admin: Headers) -> None:
    created = api.post("/configs", headers=admin, json={
        "name": "billing/database", "value": {"host": "db", "port": 5432}, "comment": "first"})
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == "/configs/billing/database"
    body = created.json()
    assert body["name"] == "billing/database" and body["version"] == 1
    assert body["author"] == "admin" and body["revision"] >= 1 and body["timestamp"] > 0

    read = api.get("/configs/billing/database", headers=admin)
    assert read.status_code == 200 and read.headers["etag"] == '"1"'
    assert read.json()["value"] == {"host": "db", "port": 5432}

    updated = api.put("/configs/billing/database", headers={**admin, "If-Match": '"1"'},
                      json={"value": {"host": "db2", "port": 5432}})
    assert updated.status_code == 200 and updated.headers["etag"] == '"2"'

    stale = api.put("/configs/billing/database", headers={**admin, "If-Match": '"1"'},
                    json={"value": {"host": "lost update", "port": 1}})
    problem = assert_problem(stale, 412)
    assert problem["current_version"] == 2 and problem["expected_version"] == 1
    assert problem["instance"] == "/configs/billing/database"
    # Nothing changed.
    latest = api.get("/configs/billing/database", headers=admin).json()
    assert latest["version"] == 2 and latest["value"]["host"] == "db2"

    first = api.get("/configs/billing/database?version=1", headers=admin)
    assert first.status_code == 200 and first.json()["value"]["host"] == "db"
    assert first.headers["etag"] == '"1"'


def test_if_match_star_and_bad_if_match(api: TestClient[Any], admin: Headers) -> None:
    assert_problem(api.put("/configs/a", headers={**admin, "If-Match": "*"},
                           json={"value": 1}), 412)
    assert api.get("/configs/a", headers=admin).status_code == 404
    assert api.put("/configs/a", headers=admin, json={"value": 1}).status_code == 201
    assert api.put("/configs/a", headers={**admin, "If-Match": "*"},
                   json={"value": 2}).headers["etag"] == '"2"'
    body = assert_problem(api.put("/configs/a", headers={**admin, "If-Match": "W/\"2\""},
                                  json={"value": 3}), 400)
    assert "If-Match" in body["detail"]
    assert api.get("/configs/a", headers=admin).json()["value"] == 2


def test_create_twice_is_409(api: TestClient[Any], admin: Headers) -> None:
    assert api.post("/configs", headers=admin, json={"name": "x", "value": 1}).status_code == 201
    body = assert_problem(api.post("/configs", headers=admin, json={"name": "x", "value": 2}), 409)
    assert body["current_version"] == 1
    assert api.get("/configs/x", headers=admin).json()["value"] == 1


def test_delete_versions_rollback_diff(api: TestClient[Any], admin: Headers) -> None:
    for value in ({"a": 1}, {"a": 2, "b": True}):
        api.put("/configs/team/app/settings", headers=admin, json={"value": value})
    diff = api.get("/configs/team/app/settings/diff?from=1&to=2", headers=admin)
    assert diff.status_code == 200
    body = diff.json()
    assert (body["name"], body["from"], body["to"]) == ("team/app/settings", 1, 2)
    assert sorted(body["patch"], key=lambda op: op["path"]) == [
        {"op": "replace", "path": "/a", "value": 2}, {"op": "add", "path": "/b", "value": True}]
    back = api.post("/configs/team/app/settings/rollback", headers=admin, json={"to_version": 1})
    assert back.status_code == 200 and back.json()["version"] == 3
    assert back.json()["value"] == {"a": 1}
    gone = api.delete("/configs/team/app/settings", headers={**admin, "If-Match": '"3"'})
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert_problem(api.get("/configs/team/app/settings", headers=admin), 404)
    versions = api.get("/configs/team/app/settings/versions", headers=admin).json()
    assert [v["version"] for v in versions["versions"]] == [1, 2, 3, 4]
    assert versions["versions"][-1]["deleted"] is True
    assert "value" not in versions["versions"][0]
    assert_problem(api.delete("/configs/team/app/settings", headers=admin), 404)
    assert_problem(api.get("/configs/team/app/settings/diff?from=1&to=9", headers=admin), 404)
    assert_problem(api.post("/configs/team/app/settings/rollback", headers=admin,
                            json={"to_version": 99}), 404)
    assert_problem(api.get("/configs/nothing/versions", headers=admin), 404)


def test_pagination_walks_every_config_once(api: TestClient[Any], admin: Headers) -> None:
    names = [f"svc/{i:02d}" for i in range(7)] + ["other/one"]
    for name in names:
        assert api.put(f"/configs/{name}", headers=admin, json={"value": name}).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"prefix": "svc/", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/configs", headers=admin, params=params).json()
        seen += [item["name"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(n for n in names if n.startswith("svc/"))
    assert pages == 3
    assert_problem(api.get("/configs", headers=admin, params={"cursor": "abc"}), 400)
    assert_problem(api.get("/configs", headers=admin, params={"limit": 0}), 400)
    assert_problem(api.get("/configs", headers=admin, params={"limit": "many"}), 400)


def test_bad_names_and_reserved_suffixes(api: TestClient[Any], admin: Headers) -> None:
    for bad in ("a b", "a//b", "trailing/", "dots/../up"):
        response = api.post("/configs", headers=admin, json={"name": bad, "value": 1})
        assert_problem(response, 400)
    body = assert_problem(api.post("/configs", headers=admin,
                                   json={"name": "app/versions", "value": 1}), 400)
    assert "versions" in body["detail"]
    assert_problem(api.put("/configs/app/rollback", headers=admin, json={"value": 1}), 405)
    assert api.get("/configs", headers=admin).json()["items"] == []


def test_bodies_are_strict(api: TestClient[Any], admin: Headers) -> None:
    unknown = assert_problem(api.post("/configs", headers=admin, json={
        "name": "a", "value": 1, "author": "someone-else"}), 400)
    assert "author" in unknown["detail"]
    missing = assert_problem(api.post("/configs", headers=admin, json={"name": "a"}), 400)
    assert "value" in missing["detail"]
    wrong_type = assert_problem(api.post("/configs", headers=admin,
                                         json={"name": 5, "value": 1}), 400)
    assert wrong_type["errors"]
    assert_problem(api.post("/configs", headers={**admin, "Content-Type": "application/json"},
                            content=b"{not json"), 400)
    assert_problem(api.post("/configs", headers={**admin, "Content-Type": "text/plain"},
                            content=b'{"name": "a", "value": 1}'), 415)
    assert_problem(api.post("/configs", headers={**admin, "Content-Type": "application/x-www"
                                                 "-form-urlencoded"}, content=b"name=a"), 415)
    assert api.get("/configs", headers=admin).json()["items"] == []


def test_body_limit_is_413(admin_env: None) -> None:
    from admin_helpers import ADMIN_PASSWORD, login

    with TestClient(make_app(max_body_bytes=2048)) as client:
        headers = login(client, "admin", ADMIN_PASSWORD)
        response = client.post("/configs", headers=headers,
                               json={"name": "big", "value": "x" * 5000})
        assert_problem(response, 413)
        assert client.get("/configs/big", headers=headers).status_code == 404


def test_schema_violation_is_422_with_paths(api: TestClient[Any], admin: Headers) -> None:
    schema = {"type": "object", "properties": {"port": {"type": "integer"}},
              "required": ["port"]}
    created = api.put("/schemas/database", headers=admin, json={"schema": schema,
                                                                "bind": ["billing/"]})
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    body = assert_problem(api.put("/configs/billing/db", headers=admin,
                                  json={"value": {"port": "five"}}), 422)
    assert body["errors"] and body["errors"][0]["path"] in ("/port", "$.port", "port")
    assert api.get("/configs/billing/db", headers=admin).status_code == 404
    assert api.put("/configs/billing/db", headers=admin,
                   json={"value": {"port": 5}}).status_code == 201

    stricter = {**schema, "properties": {"port": {"type": "integer", "minimum": 1024}}}
    check = api.post("/schemas/database/check", headers=admin, json={"schema": stricter})
    assert check.status_code == 200
    assert check.json()["ok"] is False
    assert check.json()["broken"][0]["name"] == "billing/db"
    refused = assert_problem(api.put("/schemas/database", headers=admin,
                                     json={"schema": stricter}), 409)
    assert refused["broken"][0]["name"] == "billing/db"
    assert api.get("/schemas/database", headers=admin).json()["version"] == 1
    assert_problem(api.put("/schemas/database", headers={**admin, "If-Match": '"7"'},
                           json={"schema": schema}), 412)
    forced = api.put("/schemas/database", headers={**admin, "If-Match": '"1"'},
                     json={"schema": stricter, "force": True})
    assert forced.status_code == 200 and forced.json()["version"] == 2
    assert [s["name"] for s in api.get("/schemas", headers=admin).json()["items"]] == [
        "database"]
    assert_problem(api.get("/schemas/nothing", headers=admin), 404)
    assert_problem(api.put("/schemas/bad", headers=admin,
                           json={"schema": {"type": "no-such-type"}}), 400)


def test_unknown_routes_and_methods(api: TestClient[Any], admin: Headers) -> None:
    assert_problem(api.get("/no/such/route", headers=admin), 404)
    assert_problem(api.delete("/configs", headers=admin), 405)
    assert_problem(api.patch("/configs/a", headers=admin, json={}), 405)


def test_openapi_document_and_docs_page(api: TestClient[Any]) -> None:
    document = api.get("/docs/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    for path in ("/login", "/configs", "/configs/{name}", "/configs/{name}/versions",
                 "/configs/{name}/diff", "/configs/{name}/rollback", "/schemas/{name}",
                 "/schemas/{name}/check", "/watch", "/users", "/health", "/ready", "/metrics"):
        assert path in paths, path
    page = api.get("/docs")
    assert page.status_code == 200 and "<html" in page.text.lower()
