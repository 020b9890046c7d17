"""Every `>>>` example in the package's docstrings runs and prints what it shows."""

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "schedopt"


def _examples() -> list[tuple[str, str]]:
    """(module name, docstring name) of every docstring with an example, found in the source
    without importing it (so that modules needing optional extras are only imported here when
    they hold an example)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>> " not in path.read_text():
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found += [(name, test.name) for test in _finder().find(importlib.import_module(name))
                  if test.examples]
    return found


def _finder() -> doctest.DocTestFinder:
    return doctest.DocTestFinder(exclude_empty=True)


EXAMPLES = _examples()


def test_examples_are_found():
    """The finder sees the examples the source holds (it would pass vacuously otherwise)."""
    count = sum(path.read_text().count(">>> ") for path in PACKAGE.rglob("*.py"))
    assert len(EXAMPLES) >= 7 and count >= 30


@pytest.mark.parametrize("module, name", EXAMPLES, ids=[n for _, n in EXAMPLES])
def test_docstring_example(module, name):
    (test,) = [t for t in _finder().find(importlib.import_module(module)) if t.name == name]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)
