"""Build the optional C++ kernels (``affinity_sdk._native``) with pybind11.

If the compiler is missing or the build fails, the package still installs and runs on its
Numba kernels; set ``AFFINITY_SDK_NO_NATIVE=1`` to skip the extension on purpose.

The translation units in ``csrc/`` compile in parallel, one job per core by default; set
``NPY_NUM_BUILD_JOBS=N`` to use N jobs instead (``1``: one file at a time).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from glob import glob
from typing import Any

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """Build the extension, but never fail the install because of it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the toolchain
            print(
                f"WARNING: affinity_sdk._native was not built ({exc}); Numba kernels will be used",
                file=sys.stderr,
            )

    def build_extension(self, ext: Pybind11Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover
            print(
                f"WARNING: {ext.name} was not built ({exc}); Numba kernels will be used",
                file=sys.stderr,
            )


def _build_jobs() -> int:
    """Compile jobs: ``NPY_NUM_BUILD_JOBS`` if set to a positive number, else one per core."""
    try:
        jobs = int(os.environ.get("NPY_NUM_BUILD_JOBS", "0"))
    except ValueError:
        print("WARNING: NPY_NUM_BUILD_JOBS is not a number; using one job per core", file=sys.stderr)
        jobs = 0
    if jobs > 0:
        return jobs
    try:
        return multiprocessing.cpu_count()
    except NotImplementedError:  # pragma: no cover
        return 1


class ReportingParallelCompile(ParallelCompile):
    """pybind11's parallel compile, announcing itself: a quiet build of minutes looks like a hang.

    pip shows these lines only with ``-v``; ``python setup.py build_ext`` always shows them.
    """

    def function(self) -> Callable[..., list[str]]:
        compile_in_parallel = super().function()

        def compile_function(compiler: Any, sources: list[str], *args: Any, **kwargs: Any) -> list[str]:
            jobs = min(self.default, len(sources))
            jobs_text = f"{jobs} job" if jobs == 1 else f"{jobs} jobs"
            variant = " with ASan + UBSan" if sanitize else ""
            print(
                f"affinity_sdk: compiling the C++ kernels{variant} ({len(sources)} files, {jobs_text}) ...",
                file=sys.stderr,
                flush=True,
            )
            start = time.monotonic()
            objects: list[str] = compile_in_parallel(compiler, sources, *args, **kwargs)
            print(
                f"affinity_sdk: compiled {len(sources)} files in {time.monotonic() - start:.0f} s, linking",
                file=sys.stderr,
                flush=True,
            )
            return objects

        return compile_function


# Compile the translation units of csrc/ in parallel: pybind11 swaps the compiler's one-file-at-a-time
# loop for a thread pool (every file of a stale extension is still recompiled, as before).
ReportingParallelCompile(default=_build_jobs()).install()


# AFFINITY_SDK_SANITIZE=1 builds an AddressSanitizer + UndefinedBehaviorSanitizer variant for the
# fuzz run (tests/fuzz/run.py --sanitized); any finding aborts the process.
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]
sanitize = os.environ.get("AFFINITY_SDK_SANITIZE") == "1"

ext_modules = []
if os.environ.get("AFFINITY_SDK_NO_NATIVE") != "1":
    ext_modules.append(
        Pybind11Extension(
            "affinity_sdk._native",
            sorted(glob("csrc/*.cpp")),
            include_dirs=["csrc"],
            depends=sorted(glob("csrc/*.hpp")),  # rebuild when a kernel header changes
            cxx_std=17,
            # -pthread: the NDJSON reader parses on std::threads (csrc/ingest_parallel.hpp).
            # -ffp-contract=off: GCC would fuse a * b + c into one FMA in the AVX2 / AVX-512
            # clones of the hot loops and not in the baseline one, so the same inputs could give
            # other last bits on another CPU; unfused, every clone (and machine) gives the same.
            extra_compile_args=[
                "-pthread",
                "-ffp-contract=off",
                *(["-O1", *SANITIZE] if sanitize else ["-O3", "-fno-math-errno"]),
            ],
            extra_link_args=["-pthread", *(SANITIZE if sanitize else [])],
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
