"""Build the optional C++ kernels (``affinity_sdk._native``) with pybind11.

If the compiler is missing or the build fails, the package still installs and runs on its
Numba kernels; set ``AFFINITY_SDK_NO_NATIVE=1`` to skip the extension on purpose.
"""

from __future__ import annotations

import os
import sys
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
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
            extra_compile_args=["-O1", *SANITIZE] if sanitize else ["-O3", "-fno-math-errno"],
            extra_link_args=SANITIZE if sanitize else [],
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
