"""Benchmark: which small numpy calls release the GIL (and so cost a thread switch under load).

A predict worker serves several request threads that share one GIL. A call that releases
the GIL and takes it back, even on a few elements, hands it to a waiting thread each
time. Timed alone and from 8 threads at once, such a call costs several times more per
call in the second case; a call that keeps the GIL costs about the same. The prediction
core uses only calls of the second kind on its hot path (docs/predict.md, "Speed").
Prints microseconds per call, best of three. Asserts nothing.

    .venv/bin/python benchmarks/gil_calls.py
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import numpy as np

CALLS = 40_000
NODES, TREES = 7_500, 150  # about one bank of predict's trees


def per_call_us(make: Callable[[], Callable[[], object]], threads: int) -> float:
    """Microseconds per call with ``threads`` threads calling at once (each its own arrays)."""
    def run() -> None:
        call = make()
        for _ in range(CALLS // threads):
            call()

    best = float("inf")
    for _ in range(3):
        workers = [threading.Thread(target=run) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, (time.perf_counter() - started) / CALLS * 1e6)
    return best


def cases() -> dict[str, Callable[[], Callable[[], object]]]:
    rng = np.random.default_rng(0)
    values = rng.random(NODES)
    index32 = rng.integers(0, NODES, TREES).astype(np.int32)
    index = index32.astype(np.intp)
    matrix = rng.random((1, 60))
    columns = rng.integers(0, 60, 9).astype(np.intp)

    def fresh(call: Callable[[np.ndarray], object]) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            out = np.zeros(TREES)  # one buffer per thread
            return lambda: call(out)
        return make

    return {
        "np.take(values, int32 index, out=)": fresh(lambda out: np.take(values, index32, out=out)),
        "np.take(values, intp index)": fresh(lambda out: np.take(values, index)),
        "values[int32 index]": fresh(lambda out: values[index32]),
        "values[intp index] (1-d: used)": fresh(lambda out: values[index]),
        "matrix[:, columns] (2-d fancy)": fresh(lambda out: matrix[:, columns]),
        "np.add.at(values, index, 1)": fresh(lambda out: np.add.at(out, index % TREES, 1.0)),
        "out += 1 (ufunc, used)": fresh(lambda out: np.add(out, 1.0, out=out)),
        "uuid.uuid4().hex": fresh(lambda out: uuid.uuid4().hex),
    }


def main() -> None:
    print(f"{'call':40s} {'1 thread':>10s} {'8 threads':>10s}  ratio")
    for name, make in cases().items():
        alone, crowded = per_call_us(make, 1), per_call_us(make, 8)
        print(f"{name:40s} {alone:8.2f}us {crowded:8.2f}us  {crowded / alone:5.1f}")


if __name__ == "__main__":
    main()
