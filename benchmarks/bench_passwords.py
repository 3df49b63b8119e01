"""Timing of password verification paths with the default (OWASP minimum) Argon2id parameters.

Run: ``python benchmarks/bench_passwords.py [--iterations N]``

It measures, in one process and interleaved round by round (so a change of machine load hits
every path alike), the median wall time of:

* ``verify`` with the right password,
* ``verify`` with a wrong password,
* ``verify_dummy`` (the "no such user" path),
* ``verify`` of ``UNUSABLE_PASSWORD`` (the passkey-only account path),

and prints each median and the ratios to the real verification. Ratios near 1.0 mean a caller
cannot tell the paths apart by response time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from authmodels.security import UNUSABLE_PASSWORD, PasswordHasher


def _timed(call: Callable[[], bool]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="rounds per path (30)")
    args = parser.parse_args()

    hasher = PasswordHasher()
    params = hasher.parameters
    stored = hasher.hash("correct horse battery staple")
    paths: dict[str, Callable[[], bool]] = {
        "verify (right password)": lambda: hasher.verify(stored, "correct horse battery staple"),
        "verify (wrong password)": lambda: hasher.verify(stored, "wrong horse battery staple"),
        "verify_dummy": lambda: hasher.verify_dummy("correct horse battery staple"),
        "verify (UNUSABLE_PASSWORD)": lambda: hasher.verify(UNUSABLE_PASSWORD, "anything"),
    }
    for call in paths.values():  # warm up; builds the dummy hash once
        call()
    assert paths["verify (right password)"]() is True
    assert not any(paths[name]() for name in list(paths)[1:])

    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.iterations):
        for name, call in paths.items():
            samples[name].append(_timed(call))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    real = medians["verify (right password)"]
    print(
        f"Argon2id m={params.memory_cost} KiB, t={params.time_cost}, p={params.parallelism}, "
        f"{args.iterations} iterations per path"
    )
    for name, median in medians.items():
        spread = statistics.quantiles(samples[name], n=10) if len(samples[name]) > 1 else [0, 0]
        print(
            f"  {name:<28} median {median * 1000:7.2f} ms   p10 {spread[0] * 1000:7.2f} ms   "
            f"p90 {spread[-1] * 1000:7.2f} ms   ratio to real {median / real:5.3f}"
        )
    print(f"ratio dummy/real: {medians['verify_dummy'] / real:.3f}")
    print(f"ratio unusable/real: {medians['verify (UNUSABLE_PASSWORD)'] / real:.3f}")


if __name__ == "__main__":
    main()
