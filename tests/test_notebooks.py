"""The notebooks run from top to bottom, and are committed without outputs.

The kernel is this interpreter (sys.executable with ipykernel), whatever kernels the machine
has registered: a fresh `pip install '.[test]'` venv needs no `ipykernel install`.
"""

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; a hung kernel fails the test rather than the CI job


def _this_python_kernel_manager():
    """An AsyncKernelManager class that starts ipykernel on sys.executable (no registered spec)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisPython(AsyncKernelManager):
        @property
        def kernel_spec(self):
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python ({sys.executable})",
                language="python",
            )

    return ThisPython


def test_both_notebooks_are_here():
    assert [p.name for p in NOTEBOOKS] == ["learned_model.ipynb", "quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {index} has outputs; run python scripts/strip_notebooks.py"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter's own, not ours
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # Jupyter's runtime files (connection files) go to a private folder, and the kernel
    # draws with the non-interactive inline backend.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_manager_class=_this_python_kernel_manager(), timeout=TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # the notebook's working folder
    )
    client.execute()
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert errors == []
    assert any(out.output_type == "display_data" and "image/png" in out.data
               for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
