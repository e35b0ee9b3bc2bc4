"""``/rollouts`` over HTTP: start, widen, promote, abort, health, status; a nack posted
to ``/acks`` rolls the rollout back; RBAC and bad input give problem+json and change
nothing."""

from __future__ import annotations

from typing import Any

from admin_helpers import assert_problem
from litestar.testing import TestClient

from aether_core.rollout import bucket

Headers = dict[str, str]
CLIENTS = [f"pod-{i}" for i in range(400)]


def served(api: TestClient[Any], h: Headers, name: str) -> dict[str, int]:
    out = {}
    for client in CLIENTS:
        r = api.get("/rollouts/config", headers=h, params={"name": name, "client": client})
        assert r.status_code == 200, r.text
        out[client] = r.json()["version"]
    return out


def test_widen_then_promote(api: TestClient[Any], team: dict[str, Headers]) -> None:
    ed, vi = team["ed"], team["vi"]
    assert api.put("/configs/app/web", headers=ed, json={"value": {"workers": 2}}
                   ).status_code == 201
    r = api.post("/rollouts", headers=ed, json={
        "name": "app/web", "value": {"workers": 4}, "fraction": 0.25})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["state"], body["fraction"], body["base_version"],
            body["candidate_version"]) == ("running", 0.25, 1, 2)
    first = served(api, vi, "app/web")
    inside = {c for c, v in first.items() if v == 2}
    assert inside == {c for c in CLIENTS if bucket("app/web", c) < 2500}
    assert api.get("/configs/app/web", headers=vi).json()["version"] == 1

    r = api.post("/rollouts/widen", headers=ed, json={"name": "app/web", "fraction": 0.6})
    assert r.status_code == 200 and r.json()["fraction"] == 0.6
    wider = {c for c, v in served(api, vi, "app/web").items() if v == 2}
    assert inside < wider

    client = next(iter(inside))
    assert api.post("/acks", headers=vi, json={
        "name": "app/web", "version": 2, "client": client, "status": "ack"}
    ).status_code == 202
    status = api.get("/rollouts", headers=vi, params={"name": "app/web"}).json()
    assert (status["acks"], status["nacks"], status["state"]) == (1, 0, "running")

    r = api.post("/rollouts/promote", headers=ed, json={"name": "app/web"})
    assert r.status_code == 200 and r.json()["state"] == "promoted"
    head = api.get("/configs/app/web", headers=vi).json()
    assert (head["version"], head["value"]) == (2, {"workers": 4})
    assert set(served(api, vi, "app/web").values()) == {2}


def test_a_nack_or_failed_health_rolls_back(api: TestClient[Any],
                                           team: dict[str, Headers]) -> None:
    ed, vi = team["ed"], team["vi"]
    api.put("/configs/app/web", headers=ed, json={"value": {"workers": 2}})
    api.post("/rollouts", headers=ed, json={
        "name": "app/web", "value": {"workers": 4}, "fraction": 1})
    assert set(served(api, vi, "app/web").values()) == {2}
    assert api.post("/acks", headers=vi, json={
        "name": "app/web", "version": 2, "client": "pod-7", "status": "nack",
        "detail": "workers must be < 3"}).status_code == 202
    status = api.get("/rollouts", headers=vi, params={"name": "app/web"}).json()
    assert (status["state"], status["nacks"]) == ("rolled-back", 1)
    assert "workers must be < 3" in status["reason"]
    assert set(served(api, vi, "app/web").values()) == {1}

    api.post("/rollouts", headers=ed, json={
        "name": "app/web", "value": {"workers": 3}, "fraction": 0.5})
    r = api.post("/rollouts/health", headers=ed, json={"name": "app/web", "healthy": True})
    assert r.json()["state"] == "running"
    r = api.post("/rollouts/health", headers=ed, json={
        "name": "app/web", "healthy": False, "detail": "p99 doubled"})
    assert r.status_code == 200 and r.json()["state"] == "rolled-back"
    assert set(served(api, vi, "app/web").values()) == {1}
    assert api.get("/configs/app/web", headers=vi).json()["version"] == 1


def test_rbac_and_bad_input(api: TestClient[Any], team: dict[str, Headers]) -> None:
    ed, vi, nobody = team["ed"], team["vi"], team["nobody"]
    api.put("/configs/app/web", headers=ed, json={"value": {"workers": 2}})
    assert_problem(api.post("/rollouts", headers=vi, json={
        "name": "app/web", "value": {}, "fraction": 0.1}), 403)
    assert_problem(api.get("/rollouts", headers=nobody, params={"name": "app/web"}), 403)
    assert_problem(api.get("/rollouts", headers=vi, params={"name": "app/web"}), 404)
    assert_problem(api.post("/rollouts", headers=ed, json={
        "name": "missing", "value": {}, "fraction": 0.1}), 404)
    assert_problem(api.post("/rollouts/promote", headers=ed, json={"name": "app/web"}), 404)
    for fraction in (0, 1.5, "half"):
        assert_problem(api.post("/rollouts", headers=ed, json={
            "name": "app/web", "value": {}, "fraction": fraction}), 400)
    assert_problem(api.get("/rollouts", headers=vi, params={"name": "app/web"}), 404)

    api.post("/rollouts", headers=ed, json={"name": "app/web", "value": {"w": 1},
                                            "fraction": 0.5})
    before = api.get("/rollouts", headers=vi, params={"name": "app/web"}).json()
    body = assert_problem(api.post("/rollouts/widen", headers=ed, json={
        "name": "app/web", "fraction": 0.2}), 400)
    assert "above the current 0.5" in body["detail"]
    assert_problem(api.post("/rollouts/widen", headers=vi, json={
        "name": "app/web", "fraction": 0.9}), 403)
    assert_problem(api.post("/rollouts", headers=ed, json={
        "name": "app/web", "value": {}, "fraction": 0.1}), 409)
    assert api.get("/rollouts", headers=vi, params={"name": "app/web"}).json() == before
