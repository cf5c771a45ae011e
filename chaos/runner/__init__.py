"""The test runner: a test is data (cluster, nemesis, workload, checker); ``run_test`` runs it.

::

    from chaos.runner import TestConfig, run_test
    result = run_test(TestConfig(workload="register", nemesis="partition", time_limit=30, seed=7))
    result.valid, result.run_dir          # Verdict.VALID, store/register-partition/<time>
    print(result.results.summary())
"""

from chaos.runner.checks import (AgreementResult, FaultsResult, LogsResult, agreement_check, compare_samples,
                                 faults_check, logs_check)
from chaos.runner.config import NEMESIS_NAMES, Pacer, TestConfig, derive_rng, nemesis_schedule, parse_concurrency
from chaos.runner.core import ConfigError, Result, prepare, run_test, run_test_async
from chaos.runner.recorder import NEMESIS, Recorder
from chaos.runner.results import Incomplete, RunResults, Stored, check_history, op_counts

__all__ = ["TestConfig", "Result", "RunResults", "ConfigError", "run_test", "run_test_async", "prepare", "Recorder",
           "NEMESIS", "Pacer", "nemesis_schedule", "parse_concurrency", "derive_rng", "check_history", "op_counts",
           "NEMESIS_NAMES", "Incomplete", "Stored", "AgreementResult", "FaultsResult", "LogsResult",
           "agreement_check", "compare_samples", "faults_check", "logs_check"]
