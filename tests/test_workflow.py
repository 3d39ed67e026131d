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


def _recipe(target: str) -> str:
    """The command lines of one Makefile target."""
    text = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert body, f"the Makefile has no target {target!r}"
    return body[1]


def test_gpu_check_runs_gpu_tests_bench_and_chapters_at_gpu_smoke_into_out():
    from slicemri_lite.experiments import PROFILES

    assert "gpu-smoke" in PROFILES and PROFILES["gpu-smoke"].resolution == 2
    check = _recipe("gpu-check")
    assert "torch.cuda.is_available()" in check and "tools/gpu_check.py --out $(OUT)" in check
    assert re.search(r"^OUT \?= results/gpu_check$", (ROOT / "Makefile").read_text(), re.M)
    script = (ROOT / "tools" / "gpu_check.py").read_text()
    assert '"-m", "gpu"' in script and '"slicemri_lite.analysis"' in script  # tests, bench
    assert 'PROFILE = "gpu-smoke"' in script and "get_device_name" in script
    assert "summary.json" in script and "summary.md" in script


def test_gpu_smoke_cpu_runs_the_chapters_only_and_not_inside_make_test():
    assert "tools/gpu_check.py --chapters-only" in _recipe("gpu-smoke-cpu")
    assert "gpu" not in _recipe("test") and "gpu" not in _recipe("test-fast")
