"""The model-output tests (pytest -m model_output) under each forced CPU code path, as a table.

A model's numbers differ between CPUs: CTranslate2 picks its own kernels (CT2_FORCE_CPU_ISA)
and a GEMM library (MKL on Intel, oneDNN elsewhere: CT2_USE_MKL), torch its ATen kernels
(ATEN_CPU_CAPABILITY) and oneDNN its instruction set (ONEDNN_MAX_CPU_ISA). Each path is run
here on one machine, as another CPU would run it; a path this CPU cannot run (AVX-512 on a
CPU without it) is reported as skipped. The quantities the tests bound (record_property in
the tests: WER, CER, seconds covered...) are gathered from pytest's JUnit XML and printed per
path, with their spread, so that a bound is never set inside it.

    .venv/bin/python scripts/test_isa.py                  # every path (make test-isa)
    .venv/bin/python scripts/test_isa.py --skip default   # not the one `make test` just ran
    .venv/bin/python scripts/test_isa.py --only "ct2 AVX2 mkl0" -- -k vad   # one path, some tests

Exit status: 0 when every path that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "model_output"
# The variables a path sets; every other one is removed from the environment of a run, so
# that a path is exactly what its row says.
VARIABLES = ("CT2_FORCE_CPU_ISA", "CT2_USE_MKL", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
             "MKL_ENABLE_INSTRUCTIONS")
AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl")  # what CTranslate2's AVX512 kernels use


@dataclass(frozen=True)
class CodePath:
    name: str
    env: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # /proc/cpuinfo flags
    # Which model-output tests a path can change: those marked with the library it forces.
    select: str = MARKER


def _ct2(isa: str, mkl: int, needs: tuple[str, ...]) -> CodePath:
    return CodePath(f"ct2 {isa} mkl{mkl}", {"CT2_FORCE_CPU_ISA": isa, "CT2_USE_MKL": str(mkl)}, needs,
                    f"{MARKER} and ctranslate2")


PATHS = (
    CodePath("default"),  # what this CPU picks by itself (what `make test` ran)
    *(_ct2(isa, mkl, needs) for isa, needs in (("GENERIC", ()), ("AVX2", ("avx2", "fma")), ("AVX512", AVX512))
      for mkl in (0, 1)),
    CodePath("torch avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, ("avx2", "fma"), f"{MARKER} and torch"),
    # oneDNN: CTranslate2's GEMM library where MKL is not used (AMD), and torch's for convolutions.
    CodePath("oneDNN AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "CT2_USE_MKL": "0"}, ("avx2", "fma")),
)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@dataclass
class Outcome:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system time of the run: what it costs on an idle machine, whatever the load
    why_skipped: str = ""
    failures: list = field(default_factory=list)
    # (test, property) -> value, from record_property
    measured: dict = field(default_factory=dict)


def run_path(path: CodePath, pytest_args: list[str]) -> Outcome:
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update(path.env)
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        started, cpu = time.monotonic(), _children_cpu_seconds()
        subprocess.run([sys.executable, "-m", "pytest", "-m", path.select, "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", "-o", "junit_family=xunit1", *pytest_args], cwd=REPO, env=env)
        outcome = Outcome(seconds=time.monotonic() - started, cpu_seconds=_children_cpu_seconds() - cpu)
        if not report.exists():
            outcome.failed, outcome.failures = 1, ["pytest wrote no report"]
            return outcome
        for case in ElementTree.parse(report).iter("testcase"):
            test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome.failed += 1
                outcome.failures.append(test)
            elif case.find("skipped") is not None:
                outcome.skipped += 1
            else:
                outcome.passed += 1
            for prop in case.iter("property"):
                try:
                    outcome.measured[(test, prop.get("name"))] = float(prop.get("value"))
                except (TypeError, ValueError):
                    pass
    return outcome


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def print_tables(outcomes: dict[str, Outcome]) -> None:
    width = max(len(name) for name in outcomes)
    print(f"\n{'code path':<{width}}  passed  failed  skipped  wall min  cpu min")
    for name, outcome in outcomes.items():
        if outcome.why_skipped:
            print(f"{name:<{width}}  {'-':>6}  {'-':>6}  {'-':>7}  {'-':>8}  {'-':>7}   skipped: {outcome.why_skipped}")
        else:
            print(f"{name:<{width}}  {outcome.passed:>6}  {outcome.failed:>6}  {outcome.skipped:>7}  "
                  f"{outcome.seconds / 60:>8.1f}  {outcome.cpu_seconds / 60:>7.1f}"
                  + (f"   FAILED: {', '.join(outcome.failures)}" if outcome.failed else ""))
    values: dict = defaultdict(dict)
    for name, outcome in outcomes.items():
        for key, value in outcome.measured.items():
            values[key][name] = value
    if values:
        print("\nmeasured (record_property): min .. max over the paths that ran; the value on each path")
        for (test, quantity), per_path in sorted(values.items()):
            spread = f"{min(per_path.values()):g} .. {max(per_path.values()):g}"
            print(f"  {test} {quantity}: {spread}")
            print("    " + "; ".join(f"{name}: {value:g}" for name, value in per_path.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="PATH",
                        help="run only this code path (repeatable; names as in the table)")
    parser.add_argument("--skip", action="append", default=[], metavar="PATH",
                        help="leave this code path out (repeatable), e.g. default after a full run")
    parser.add_argument("--list", action="store_true", help="print the code paths and exit")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --, e.g. -- -k vad")
    args = parser.parse_args(argv)
    known = {path.name for path in PATHS}
    unknown = sorted(set(args.only + args.skip) - known)
    if unknown:
        parser.error(f"unknown code path(s) {', '.join(unknown)}: choose among {', '.join(sorted(known))}")
    if args.list:
        for path in PATHS:
            print(f"{path.name}: {' '.join(f'{k}={v}' for k, v in path.env.items()) or '(no variable)'}"
                  f"  -> pytest -m '{path.select}'")
        return 0
    flags = cpu_flags()
    outcomes: dict[str, Outcome] = {}
    for path in PATHS:
        if (args.only and path.name not in args.only) or path.name in args.skip:
            continue
        missing = [flag for flag in path.needs if flag not in flags]
        if missing:
            outcomes[path.name] = Outcome(why_skipped=f"this CPU lacks {', '.join(missing)}")
            continue
        print(f"\n=== {path.name}: {' '.join(f'{k}={v}' for k, v in path.env.items()) or '(no variable)'}"
              f"  -> pytest -m '{path.select}'", flush=True)
        outcomes[path.name] = run_path(path, args.pytest_args)
    print_tables(outcomes)
    return 1 if any(outcome.failed for outcome in outcomes.values()) or not outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
