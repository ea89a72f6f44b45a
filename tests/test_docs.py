"""The documentation: README.md and docs/ are current, short where they must be, and link only to
files that exist; the API reference builds from the docstrings (pdoc)."""

import pathlib
import re
import subprocess
import sys

import pytest

from experiments import report

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Paths that no longer exist (the code moved) and files that were never in the repository.
STALE = ["experiments/ising.py", "experiments/graph_autoencoder.py", "experiments/digress_qm9.py",
         "experiments/common.py", "sympe_jax/data/", "nn/gnn.py", "sympe_jax/train.py", "sympe_jax/automorphisms.py",
         "DESIGN.md", "digress-qm9.md", "sympe.md", "ecosystem.md", "the issue", "the sketch", "/work/"]


def test_report_check_passes():
    assert report.main(["--check"]) == 0, "run python -m experiments.report"


def test_report_writes_every_page_that_exists():
    assert {f"docs/{p.name}" for p in PAGES[1:] if "<!-- BEGIN" in p.read_text()} <= set(report.TARGETS)
    assert {"docs/index.md", "docs/design.md"} <= {f"docs/{p.name}" for p in PAGES}


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines (at most 150)"
    assert "make test" in "\n".join(lines)        # .ci/run calls exactly this


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_stale_paths(page):
    text = page.read_text()
    assert not [s for s in STALE if s in text]


def test_api_reference_builds(tmp_path):
    pytest.importorskip("pdoc")
    subprocess.run([sys.executable, "-m", "pdoc", "-o", str(tmp_path), "sympe_jax"], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    for module in ("encodings", "flax", "jraph"):
        page = tmp_path / "sympe_jax" / f"{module}.html"
        assert page.exists(), f"pdoc wrote no page for sympe_jax.{module}"
    assert "graph_encoding" in (tmp_path / "sympe_jax" / "encodings.html").read_text()
