"""Checkers for histories: linearizability against a model, and invariant checkers.

Every checker is a pure function of an in-memory history (a list of
:class:`chaos.history.Op` in real-time order), so a test harness can call it directly::

    from chaos.checker import check_linearizable, make_model
    result = check_linearizable(ops, make_model("cas-register", init=None), timeout=10)
    result.valid  # chaos.verdict.Verdict: VALID, INVALID or UNKNOWN (a timeout)
"""

from .linear import INVALID, UNKNOWN_VERDICT, VALID, LinearizabilityResult, PartitionResult, check_calls, check_linearizable
from .bank import BankResult, check_bank
from .invariants import (CounterResult, LockResult, SetResult, Stats, check_counter, check_lock, check_set,
                         latency_series, quantiles, rate_series, stats)
from .models import ILLEGAL, MODELS, UNKNOWN, Model, ModelError, make_model, model_names

__all__ = ["check_linearizable", "check_calls", "LinearizabilityResult", "PartitionResult", "VALID", "INVALID",
           "UNKNOWN_VERDICT", "Model", "ModelError", "make_model", "model_names", "MODELS", "UNKNOWN", "ILLEGAL",
           "check_counter", "check_lock", "check_set", "stats", "latency_series", "rate_series", "quantiles",
           "CounterResult", "LockResult", "SetResult", "Stats", "check_bank", "BankResult"]
