{%- set hook = {"storage": "aether_register_storage", "watcher": "aether_register_watchers", "auth": "aether_register_auth", "key_provider": "aether_register_key_providers"}[cookiecutter.kind] -%}
"""Entry point ``{{ cookiecutter.plugin_name }}``: registers
:class:`~{{ cookiecutter.package }}.provider.{{ cookiecutter.class_name }}`.

A plugin module does nothing at import time but define hooks: the provider module is
imported only when the kernel collects the plugin.
"""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def {{ hook }}(register: Register) -> None:
    from {{ cookiecutter.package }}.provider import {{ cookiecutter.class_name }}

    register({{ cookiecutter.class_name }})
