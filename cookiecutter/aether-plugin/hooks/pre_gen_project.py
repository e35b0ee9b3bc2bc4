"""Refuse a provider name the manifest and Python cannot both use."""

import re
import sys

NAME = "{{ cookiecutter.plugin_name }}"
CLASS = "{{ cookiecutter.class_name }}"

if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", NAME):
    sys.exit(f"plugin_name {NAME!r}: use lower-case letters, digits and single '-' "
             "(it becomes the entry point, the package aether_<name> and `use = \"<name>\"`)")
if not CLASS.isidentifier():
    sys.exit(f"class_name {CLASS!r} is not a Python identifier")
