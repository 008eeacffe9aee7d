"""Run every fuzz harness in ``targets.py`` under atheris (coverage-guided libFuzzer) for a bounded
time, each in its own subprocess, and exit non-zero if any of them found a crash or an exception
the entry point does not document.

Usage::

    python tests/fuzz/run.py --seconds 60            # the whole budget, split across targets
    python tests/fuzz/run.py --seconds 30 --only ndjson state
    python tests/fuzz/run.py --seconds 70 --seed 1    # what CI runs: a reproducible sequence
    python tests/fuzz/run.py --seconds 70 --seed 1 --sanitized   # and against an ASan + UBSan build

Each target starts from a small seed corpus of valid inputs (written to a temporary folder, so the
checkout stays clean); a crashing input is saved as ``crash-*`` in ``--artifacts`` (default: a
temporary folder, printed). The summary line per target gives libFuzzer's run count.

``--sanitized`` first builds the C++ extension with AddressSanitizer and UndefinedBehaviorSanitizer
(``AFFINITY_SDK_SANITIZE=1 python setup.py build_ext``, about two minutes) next to a copy of the
package in a temporary folder, and runs the harnesses against it with the compiler's sanitizer
runtimes preloaded: an out-of-bounds access, use-after-free or undefined behaviour in the C++ code
aborts the target, which counts as a crash.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SEEDS: dict[str, list[bytes]] = {
    "json": [
        b'{"type":"app_opened","user_id":"u","timestamp":0}',
        b'[{"type":"order_completed","user_id":"u","timestamp":"2026-01-01T00:00:00Z","order_id":"o",'
        b'"revenue":3,"products":[{"product_id":"p","category":"c","brand":"b","price":3}]}]',
    ],
    "ndjson": [
        b'\x01{"type":"product_viewed","user_id":"u","timestamp":1767225600000,"event_id":"e",'
        b'"product":{"product_id":"p","category":"c","brand":"b","price":9.5,"quantity":2}}\n'
        b'{"type":"email_opened","user_id":"v","timestamp":0,"campaign_id":"c"}\n',
    ],
    "msgpack": [
        b"\x91\x83\xa4type\xaaapp_opened\xa7user_id\xa1u\xa9timestamp\x00",
    ],
    "segment": [
        b'{"batch":[{"type":"track","event":"Product Viewed","userId":"u","messageId":"m",'
        b'"timestamp":"2026-01-01T00:00:00Z","properties":{"product_id":"p","category":"c",'
        b'"brand":"b","price":3}}],"sentAt":"2026-01-01T00:00:01Z"}',
    ],
    "config": [
        b'version = "v"\n[signals.product_viewed]\nweight = 1.0\nhalf_life = "3d"\n'
        b'[tiers]\nmethod = "absolute"\nhigh = 80\nmedium = 40\n',
        b'{"signals":{"order_completed":{"weight":10,"half_life":"30d","value":"revenue"}}}',
    ],
    "scorer": [
        b'{"type":"order_completed","user_id":"u","timestamp":0,"order_id":"o","revenue":3,"products":[]}',
    ],
}


def _state_seed() -> bytes:
    sys.path.insert(0, str(ROOT))
    from affinity_sdk import Scorer

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.afs"
        scorer = Scorer(backend="reference", dedupe_window=8)
        scorer.ingest(SEEDS["ndjson"][0][1:])
        scorer.save(path, source_position=1)
        return path.read_bytes()


def _sanitized_package() -> tuple[str, str]:
    """Build the ASan + UBSan extension beside a copy of the package; ``(folder, LD_PRELOAD)``."""
    folder = Path(tempfile.mkdtemp(prefix="affinity-sanitized-"))
    env = {**os.environ, "AFFINITY_SDK_SANITIZE": "1"}
    cmd = [sys.executable, "setup.py", "build_ext", "--build-lib", str(folder / "build")]
    cmd += ["--build-temp", str(folder / "obj")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    built = sorted((folder / "build" / "affinity_sdk").glob("_native*"))
    if proc.returncode != 0 or not built:
        raise SystemExit(f"sanitized build failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    package = folder / "pkg" / "affinity_sdk"
    shutil.copytree(ROOT / "affinity_sdk", package, ignore=shutil.ignore_patterns("_native*", "__pycache__"))
    shutil.copy(built[0], package)
    # The runtimes of the compiler that built the extension must load before the interpreter's libc.
    compiler = shlex.split(sysconfig.get_config_var("CXX") or "g++")[0]
    runtimes = []
    for name in ("libasan.so", "libubsan.so"):
        found = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True, text=True)
        runtimes.append(found.stdout.strip())
    if not all(Path(r).is_absolute() and Path(r).exists() for r in runtimes):
        raise SystemExit(f"{compiler} does not ship the sanitizer runtimes ({runtimes})")
    return str(folder / "pkg"), " ".join(runtimes)


def _child(target: str, seconds: int, corpus: str, artifacts: str, seed: int) -> None:
    import atheris

    # Numba compiles the original bytecode of its kernels; atheris's probes would break it.
    numba_modules = [
        f"affinity_sdk.kernels.{name}"
        for name in (
            "_numba",
            "_numba_accumulate",
            "_numba_tiers",
            "_affinity_numba",
            "_dedupe_numba",
            "_bgnbd_numba",
            "_propensity_numba",
        )
    ]
    with atheris.instrument_imports(include=["affinity_sdk", "targets"], exclude=numba_modules):
        sys.path.insert(0, str(HERE))
        import targets

    body = targets.TARGETS[target]
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={seconds}",
            f"-seed={seed}",
            "-rss_limit_mb=3072",
            "-max_len=4096",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/{target}-",
            corpus,
        ],
        body,
    )
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="total time budget, split across targets")
    parser.add_argument("--only", nargs="*", help="run only these targets")
    parser.add_argument(
        "--seed", type=int, default=0, help="libFuzzer's random seed (default 0: a new one each run)"
    )
    parser.add_argument(
        "--sanitized", action="store_true", help="fuzz an ASan + UBSan build of the C++ extension"
    )
    parser.add_argument("--artifacts", help="folder for crashing inputs (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.seconds, args.corpus, args.artifacts, args.seed)
        return 0

    sys.path.insert(0, str(HERE))
    from targets import TARGETS

    names = args.only or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(TARGETS)}")
    per_target = max(1, args.seconds // len(names))
    artifacts = args.artifacts or tempfile.mkdtemp(prefix="affinity-fuzz-artifacts-")
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    seeds = {**SEEDS, "state": [_state_seed()]}
    failed = []
    total_runs = 0
    path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ)
    if args.sanitized:
        package, preload = _sanitized_package()
        path.insert(0, package)
        # Python itself is not instrumented: its allocations at exit are not leaks to report.
        env.update(LD_PRELOAD=preload, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        check = "import affinity_sdk._native as n; print(n.__file__)"
        probe = subprocess.run(
            [sys.executable, "-c", check],
            cwd=HERE,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": package},
        )
        if not probe.stdout.startswith(package):
            raise SystemExit(
                f"the sanitized extension does not load: {(probe.stdout + probe.stderr)[-2000:]}"
            )
        print(f"sanitized build: {probe.stdout.strip()} (preloading {preload})", flush=True)
    env["PYTHONPATH"] = os.pathsep.join(path)
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"corpus-{name}-") as corpus:
            for i, seed in enumerate(seeds.get(name, [b""])):
                Path(corpus, f"seed-{i}").write_bytes(seed)
            cmd = [
                sys.executable,
                __file__,
                "--child",
                name,
                "--seconds",
                str(per_target),
                "--seed",
                str(args.seed),
            ]
            cmd += ["--corpus", corpus, "--artifacts", artifacts]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=per_target + 120)
        log = proc.stdout + proc.stderr
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(
            r"Done (\d+) runs", log
        )
        count = int(runs[-1]) if runs else 0
        total_runs += count
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"{name:8s} {count:>9d} runs in {per_target:>4d} s  {status}", flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(log[-4000:], file=sys.stderr)
    print(f"total    {total_runs:>9d} runs; crashing inputs (if any) in {artifacts}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
