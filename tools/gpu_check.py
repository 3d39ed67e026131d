"""Run the book's chapters at PROFILE="gpu-smoke" (and, on a GPU, the GPU tests and the bench);
write what was measured to OUT/summary.json and OUT/summary.md.

    python tools/gpu_check.py --out results/gpu_check            # make gpu-check (CUDA)
    python tools/gpu_check.py --chapters-only --out results/gpu_smoke_cpu   # make gpu-smoke-cpu
    python tools/gpu_check.py --chapters-only --chapter 03 --out /tmp/check  # one chapter

Every step runs even when an earlier one fails; the exit status is 1 if any failed.
Executed chapters are kept in OUT/chapters/ for reading the failure.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PROFILE = "gpu-smoke"


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _device() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "name": torch.cuda.get_device_name(0) if cuda else _cpu_name(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda if cuda else None,
        "cpus": __import__("os").cpu_count(),
    }


def _step(name: str, run) -> dict:
    started = time.perf_counter()
    try:
        detail = run() or ""
        status = "ok"
    except Exception as error:  # noqa: BLE001 - record every failure, run every step
        detail, status = f"{type(error).__name__}: {str(error)[-1500:]}", "failed"
    seconds = round(time.perf_counter() - started, 1)
    print(f"{status:>6}  {seconds:7.1f} s  {name}", flush=True)
    return {"step": name, "status": status, "seconds": seconds, "detail": detail}


def _command(args: list[str]):
    def run():
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    return run


def _chapter(path: Path, out: Path):
    def run():
        from notebook_tools import execute_notebook

        execute_notebook(path, out / "chapters", {"PROFILE": PROFILE})

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check")
    parser.add_argument("--chapters-only", action="store_true", help="no GPU tests, no bench")
    parser.add_argument("--chapter", action="append", help="NN of a chapter (default: all)")
    args = parser.parse_args(argv)
    from notebook_tools import chapters

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = _device()
    print(f"gpu-smoke check on {device['name']} ({device['device']}), results in {out}")
    steps = []
    if not args.chapters_only:
        python = sys.executable
        steps.append(_step("pytest -m gpu", _command([python, "-m", "pytest", "-m", "gpu", "-q"])))
        bench = [python, "-m", "slicemri_lite.analysis", "--device", "cuda", "--resolution", "2",
                 "--compare", "paper", "--batch-size", "8", "--steps", "5", "--warmup", "2",
                 "--out", str(out / "bench_gpu.json")]  # fmt: skip
        steps.append(_step("bench (2 mm, --compare paper)", _command(bench)))
    wanted = [p for p in chapters() if not args.chapter or p.name[:2] in args.chapter]
    steps += [_step(f"chapter {p.stem} at {PROFILE}", _chapter(p, out)) for p in wanted]
    summary = {"profile": PROFILE, **device, "steps": steps,
               "failed": sum(s["status"] != "ok" for s in steps)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# gpu-smoke check: {device['name']} ({device['device']}, torch {device['torch']})",
             "", "| step | status | seconds |", "|---|---|---|",
             *(f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps)]  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"{summary['failed']} of {len(steps)} steps failed; wrote {out}/summary.json and .md")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
