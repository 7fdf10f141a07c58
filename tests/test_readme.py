"""Every Python snippet of the README runs, in order, as a newcomer would paste them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_readme_has_snippets_from_the_package_root():
    code = snippets()
    assert len(code) >= 3
    assert "import inn_mobile" in code[0]


@pytest.mark.slow
def test_readme_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, code in enumerate(snippets()):
        exec(compile(code, f"README.md snippet {i + 1}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "model.innb").stat().st_size > 0
