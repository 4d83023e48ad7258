"""The OpenMP pool `train` (and the benchmarks' reference loop) asks MXNet for: every CPU the
process may use, unless the user set OMP_NUM_THREADS."""

from __future__ import annotations

import os

from ssd_sagemaker.cpu_features import use_every_cpu_for_openmp


def test_the_pool_takes_every_cpu_of_the_affinity_mask() -> None:
    environ: dict[str, str] = {}
    use_every_cpu_for_openmp(environ)
    assert environ == {"OMP_NUM_THREADS": str(len(os.sched_getaffinity(0)))}


def test_a_users_setting_is_kept() -> None:
    environ = {"OMP_NUM_THREADS": "1"}
    use_every_cpu_for_openmp(environ)
    assert environ == {"OMP_NUM_THREADS": "1"}
