"""The history model: Jepsen-shaped ops, pairing into calls, and reading/writing formats."""

from .formats import (HEADER_KEY, HEADER_LINES, MISSING, Loaded, detect_format, dumps_jsonl, load, ops_from_dicts,
                      parse, read_jsonl, read_jsonl_header, read_knossos_edn, read_porcupine_etcd, read_porcupine_kv,
                      to_edn, write_jsonl)
from .ops import FAIL, INFO, INVOKE, OK, Call, HistoryError, Op, as_ops, is_client_op, pair

__all__ = ["Op", "Call", "HistoryError", "INVOKE", "OK", "FAIL", "INFO", "MISSING", "HEADER_KEY", "HEADER_LINES",
           "read_jsonl_header", "Loaded", "pair",
           "is_client_op", "load", "parse", "detect_format", "read_jsonl", "write_jsonl", "dumps_jsonl",
           "read_knossos_edn", "read_porcupine_etcd", "read_porcupine_kv", "to_edn", "ops_from_dicts", "as_ops"]
