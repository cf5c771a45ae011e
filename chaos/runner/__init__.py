"""The test runner: a test is data (cluster, nemesis, workload, checker); ``run_test`` runs it.

::

    from chaos.runner import TestConfig, run_test
    result = run_test(TestConfig(workload="register", nemesis="partition", time_limit=30, seed=7))
    result.valid, result.run_dir
"""

from chaos.runner.config import NEMESIS_NAMES, Pacer, TestConfig, derive_rng, nemesis_schedule, parse_concurrency
from chaos.runner.core import Result, run_test, run_test_async
from chaos.runner.recorder import Recorder
from chaos.runner.verdict import CRASHED, check_history, exit_code, merge_valid, op_counts

__all__ = ["TestConfig", "Result", "run_test", "run_test_async", "Recorder", "Pacer", "nemesis_schedule",
           "parse_concurrency", "derive_rng", "check_history", "merge_valid", "exit_code", "op_counts",
           "NEMESIS_NAMES", "CRASHED"]
