"""The kernel's watcher contract, run against this plugin's watcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aether_core.testing import WatcherContract
from aether_core.testing.watcher_contract import PREFIX

from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}


class Test{{ cookiecutter.class_name }}(WatcherContract):
    @pytest.fixture
    def watcher_class(self) -> type[{{ cookiecutter.class_name }}]:
        return {{ cookiecutter.class_name }}

    @pytest.fixture
    def watcher_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"path": str(tmp_path / "events.jsonl"), "prefix": PREFIX}

    async def observe(self, watcher_settings: dict[str, Any]) -> list[tuple[str, Any]]:
        try:
            with open(watcher_settings["path"], encoding="utf-8") as file:  # noqa: ASYNC230
                events = [json.loads(line) for line in file]
        except FileNotFoundError:
            return []
        return [(event["name"], event["value"]) for event in events]
