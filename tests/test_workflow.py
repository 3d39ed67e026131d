"""The GitHub Actions workflow: it parses, and calls the Makefile's own targets."""

from __future__ import annotations

import re

import yaml
from notebook_tools import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    return workflow


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def _runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_workflow_runs_on_pull_requests_and_main():
    triggers = _workflow()["on"]
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_pull_requests_run_make_test():
    job = _workflow()["jobs"]["test"]
    assert "pull_request" in job["if"]
    assert "make test" in _runs(job)


def test_main_builds_the_book_and_publishes_it():
    jobs = _workflow()["jobs"]
    build = jobs["build"]
    assert "refs/heads/main" in build["if"]
    assert _runs(build).index("make book") < _runs(build).index("make check-book")
    upload = next(s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert jobs["deploy"]["needs"] == "build"
    assert "actions/deploy-pages" in _uses(jobs["deploy"])
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_every_make_call_is_a_makefile_target():
    targets = _make_targets()
    calls = [
        word
        for job in _workflow()["jobs"].values()
        for run in _runs(job)
        for word in re.findall(r"\bmake\s+([\w-]+)", run)
    ]
    assert calls, "the workflow calls no make target"
    assert set(calls) <= targets, f"not in the Makefile: {set(calls) - targets}"


def test_venv_and_cohort_cache_are_cached():
    for name in ("test", "build"):
        job = _workflow()["jobs"][name]
        cached = " ".join(
            s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/cache")
        )
        assert ".venv" in cached and "slicemri-data" in cached
    assert _workflow()["env"]["SLICEMRI_DATA"].endswith(".cache/slicemri-data")
