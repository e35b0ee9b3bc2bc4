"""Keep the provider and the contract test of the chosen kind; drop the others."""

import shutil
from pathlib import Path

KIND = "{{ cookiecutter.kind }}"
PACKAGE = Path("{{ cookiecutter.package }}")

(PACKAGE / "_kinds" / f"{KIND}.py").rename(PACKAGE / "provider.py")
shutil.rmtree(PACKAGE / "_kinds")
Path("tests/_kinds", f"{KIND}.py").rename(Path("tests", f"test_{PACKAGE}_contract.py"))
shutil.rmtree("tests/_kinds")
