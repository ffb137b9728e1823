"""The example notebook, executed by nbclient on a real ipykernel, and its outputs checked.

``example/lofn_tour.ipynb`` counts words (``lofn/busybox``), aligns a few
simulated reads (``lofn/aligner:bookworm``), reads the trace into pandas and
draws its timeline. The kernel is the ``lofn`` kernel spec, which
``scripts/dev.sh setup`` installs into the virtualenv (the venv's Python).
The test gives the notebook its text (``LOFN_TOUR_TEXT``) and a trace
directory outside the notebook's own temporary directory
(``LOFN_TOUR_TRACE``), and checks what the notebook printed and displayed
against its own count of the text and its own reading of the trace. The
kernel's ``TMPDIR`` is the session's, so the per-test check sees its task
directories and containers, and the notebook's own ``lofn-tour-*``
directory, if any is left.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import sys
import time

import pytest

from tests.conftest import ROOT, require

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]

NOTEBOOK = ROOT / "example" / "lofn_tour.ipynb"
KERNEL = "lofn"
PAIRS = 2_000  # as the notebook simulates
WIDGET = "application/vnd.jupyter.widget-view+json"
# Punctuation, digits, capitals, tabs, blank lines and a word split by a hyphen: what awk
# turns into spaces and lower-cases must be what Python does too.
VOCABULARY = ["Genome", "genome", "GENOME", "read-pair", "reads", "42", "x2", "minimap2", "BAM",
              "bam_file", "Sample's", "e.coli", "(control)", "3'-end", "a", "an", "the", "of,",
              "and;", "to:", "in!", "is?", "CRLF\t", "tab"]


def write_text(path: str) -> None:
    rng = random.Random(20261203)
    with open(path, "w", encoding="ascii") as handle:
        for number in range(2500):
            handle.write(" ".join(rng.choices(VOCABULARY, k=rng.randint(0, 14))))
            handle.write("\n" if number % 97 else "\n\n")


def python_count(path: str) -> dict[str, int]:
    """Words as the map's awk sees them: ASCII lower-cased, runs of [^a-z0-9] as spaces."""
    with open(path, encoding="ascii") as handle:
        return dict(collections.Counter(
            word for line in handle for word in re.sub("[^a-z0-9]+", " ", line.lower()).split()))


@pytest.fixture(scope="module")
def kernel_spec():
    """The ``lofn`` kernel spec: it must start this virtualenv's Python."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        require(f"the Jupyter kernel {KERNEL!r}",
                "bash scripts/dev.sh setup installs it into the virtualenv")
    if os.path.abspath(spec.argv[0]) != os.path.abspath(sys.executable):  # the venv's link
        require(f"the Jupyter kernel {KERNEL!r} of this virtualenv",
                f"it starts {spec.argv[0]}, not {sys.executable}: run bash scripts/dev.sh setup")
    return spec


def outputs(cell) -> list[dict]:
    return list(cell.get("outputs", []))


def text_of(cell) -> str:
    """Everything a cell printed (stdout) and its results' text/plain, in order."""
    parts = []
    for output in outputs(cell):
        if output["output_type"] == "stream" and output["name"] == "stdout":
            parts.append(output["text"])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def printed_json(cell) -> dict:
    """The JSON objects a cell printed, one a line, merged."""
    found: dict = {}
    for line in text_of(cell).splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    return found


def test_the_notebook_runs_and_its_outputs_are_right(kernel_spec, busybox, aligner_image,
                                                     session_tmp, workdir):
    import nbformat
    from nbclient import NotebookClient

    from lofn.report import load_trace

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in notebook.cells if c.cell_type == "code"), "stored with outputs"

    text = os.path.join(workdir, "text.txt")
    trace = os.path.join(workdir, "trace")
    write_text(text)
    env = {**os.environ, "TMPDIR": session_tmp, "PYSPARK_PYTHON": sys.executable,
           "LOFN_TOUR_TEXT": text, "LOFN_TOUR_TRACE": trace}
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=600, startup_timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.monotonic()
    try:
        client.execute(env=env)
    except BaseException:
        # the clean-up cell did not run: its directory would only add to the failure
        for name in os.listdir(session_tmp):
            if name.startswith("lofn-tour-"):
                shutil.rmtree(os.path.join(session_tmp, name), ignore_errors=True)
        raise
    sys.stderr.write(f"the notebook ran in {time.monotonic() - start:.0f} s\n")

    cells = {cell.get("id"): cell for cell in notebook.cells}
    errors = [(cell.get("id"), output.get("ename")) for cell in notebook.cells
              for output in outputs(cell) if output["output_type"] == "error"]
    assert not errors
    assert all(cell.get("execution_count") for cell in notebook.cells
               if cell.cell_type == "code"), "a cell did not run"

    # the word count: every word, counted as Python counts it
    counts = printed_json(cells["word-count-check"])["word_counts"]
    assert counts == python_count(text)
    assert "the same counts as collections.Counter" in text_of(cells["word-count-check"])
    top = "".join(output["text"] for output in outputs(cells["word-count"])
                  if output.get("name") == "stdout").split()
    most = max(counts.values())
    assert top[:2] == [str(most), min(w for w, n in counts.items() if n == most)]

    # lofn.progress drew widget bars (tqdm.auto in a kernel with ipywidgets), no text bar
    for name in ("word-count", "alignment"):
        assert any(WIDGET in output.get("data", {}) for output in outputs(cells[name])), name
        assert not any(output.get("name") == "stderr" and "stage " in output.get("text", "")
                       for output in outputs(cells[name])), f"{name}: a text bar"

    # the alignment: every simulated read is in the merged BAM, nearly all of them mapped
    alignment = printed_json(cells["alignment"])["alignment"]
    assert alignment["pairs"] == PAIRS
    assert alignment["primary_records"] == 2 * PAIRS
    assert alignment["records"] >= 2 * PAIRS
    assert alignment["mapped"] > 0.95 * alignment["records"]

    # the trace, as the test reads it: the notebook's table and timeline show the same records
    records = load_trace(trace)
    assert printed_json(cells["trace"])["trace_records"] == len(records)
    assert all(r["status"] == "ok" for r in records)
    methods = {(r["method"], r["image"].split(":")[0]) for r in records}
    assert methods == {("map", "lofn/busybox"), ("reduce", "lofn/busybox"),
                       ("map", "lofn/aligner"), ("map_binary", "lofn/aligner")}
    table = "".join(output["data"].get("text/html", "") for output in outputs(cells["trace-stages"])
                    if "data" in output)
    assert "<table" in table
    index = {cell for cell in re.findall(r"<th[^>]*>([^<]*)</th>", table)}
    for record in records:  # a row for each stage, with its method and image
        assert {str(record["stage"]), record["method"], record["image"]} <= index, record
    for column in ("containers", "median_seconds", "slowest_seconds", "peak_memory_mib"):
        assert f"<th>{column}</th>" in table

    svgs = [output["data"]["image/svg+xml"] for output in outputs(cells["timeline"])
            if "image/svg+xml" in output.get("data", {})]
    assert len(svgs) == 1 and svgs[0].lstrip().startswith("<svg")
    assert len(re.findall(r'<g class="bar[ "]', svgs[0])) == len(records)

    # the clean-up cell stopped Spark and removed the notebook's directory
    assert not [name for name in os.listdir(session_tmp) if name.startswith("lofn-tour-")]
