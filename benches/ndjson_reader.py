"""Throughput of the compiled NDJSON reader alone (``_native.NdjsonReader``), chunk by chunk.

Feeds a file in 16 MiB pieces (``iter_chunks``, as the CLI reads it) to one fresh reader per pass
and prints MB/s three ways (medians over the passes): for the whole loop (file reads included), for
the wall time inside ``NdjsonReader.read`` and per CPU second of the reading thread inside it (the
figure a busy shared machine disturbs least). ``--native PATH`` times another build of the
extension (a saved copy of the ``.so``), so two builds can be timed alternately:

    python benches/ndjson_reader.py EVENTS.ndjson --repeat 3
    python benches/ndjson_reader.py EVENTS.ndjson --native /tmp/base/_native.cpython-311-x86_64-linux-gnu.so

Without ``--native`` it times the ``affinity_sdk`` that Python imports, whose path it prints: run as
a script, that is the installed package, not necessarily the checkout's (``PYTHONPATH=.`` for that).
A file to read: ``python benches/e2e.py`` writes ``events-<n>-<users>.ndjson`` (3M events: 530 MB).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import time
from types import ModuleType

from affinity_sdk.ingest.ndjson import iter_chunks


def load_native(path: str | None) -> ModuleType:
    """The package's extension, or the build at ``path`` (loaded as a top-level ``_native``)."""
    if path is None:
        return importlib.import_module("affinity_sdk._native")
    spec = importlib.util.spec_from_file_location("_native", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_pass(
    native: ModuleType, path: str, chunk_bytes: int, threads: int
) -> tuple[int, float, float, float]:
    """Bytes read, seconds for the whole loop, seconds inside ``read`` and this thread's CPU
    seconds inside ``read`` (what a busy shared machine disturbs least; one thread only)."""
    reader = native.NdjsonReader(threads, 1 << 20)
    size = 0
    inside = cpu = 0.0
    start = time.perf_counter()
    with open(path, "rb") as fh:
        for chunk in iter_chunks(fh, chunk_bytes, buffers=2):
            t, c = time.perf_counter(), time.thread_time()
            reader.read(chunk)
            inside += time.perf_counter() - t
            cpu += time.thread_time() - c
            size += len(chunk)
    return size, time.perf_counter() - start, inside, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--native", help="path of another build of affinity_sdk._native")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk-mib", type=int, default=16)
    args = ap.parse_args()
    native = load_native(args.native)
    print(f"extension: {native.__file__}")
    totals, insides, cpus = [], [], []
    for _ in range(args.repeat):
        size, total, inside, cpu = one_pass(native, args.path, args.chunk_mib << 20, args.threads)
        totals.append(size / 1e6 / total)
        insides.append(size / 1e6 / inside)
        cpus.append(size / 1e6 / cpu)
    print(
        f"{size / 1e6:.0f} MB, {args.repeat} passes: loop {statistics.median(totals):.0f} MB/s "
        f"(all {', '.join(f'{x:.0f}' for x in totals)}), in read() {statistics.median(insides):.0f} MB/s, "
        f"per CPU second in read() {statistics.median(cpus):.0f} MB/s"
    )


if __name__ == "__main__":
    main()
