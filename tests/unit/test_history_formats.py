"""The history model: EDN reading, importers' semantics, pairing, JSON Lines and EDN export."""

from __future__ import annotations

import json

import pytest

from chaos.history import (INFO, OK, HistoryError, Op, detect_format, dumps_jsonl, load, pair, parse,
                           read_jsonl, read_knossos_edn, read_porcupine_etcd, read_porcupine_kv, to_edn)
from chaos.history import edn


def test_edn_reads_scalars_collections_and_comments() -> None:
    text = '; comment\n[nil true false 42 -7 1.5 "a\\"b\\n" :kw sym {:a 1, :b [2 3]} #{1 2} (1 2) #_ :gone #inst "x" \\c]'
    value = edn.loads(text)
    assert value == [None, True, False, 42, -7, 1.5, 'a"b\n', "kw", "sym", {"a": 1, "b": [2, 3]},
                     frozenset({1, 2}), (1, 2), "x", "c"]
    assert isinstance(value[7], edn.Keyword) and isinstance(value[8], edn.Symbol)


def test_edn_reads_deep_nesting_without_recursion() -> None:
    assert edn.loads("[" * 5000 + "]" * 5000) is not None


@pytest.mark.parametrize("text, line", [("[1 2", 1), ("\n\n[1 }", 3), ('{:a}', 1), ("\n]", 2)])
def test_edn_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(edn.EdnError) as info:
        edn.loads_all(text)
    assert info.value.line == line


def test_edn_dumps_round_trips() -> None:
    value = {edn.Keyword("type"): edn.Keyword("ok"), edn.Keyword("value"): [1, None, "s", [2, 3]]}
    assert edn.loads(edn.dumps(value)) == {"type": "ok", "value": [1, None, "s", [2, 3]]}


ETCD = """INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]
INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:fail\t:read\t:timed-out
INFO  jepsen.util - 3 :invoke :write 3
INFO  jepsen.util - 3 :info :write :timed-out
INFO  jepsen.util - 4\t:invoke\t:read\tnil
INFO  jepsen.util - 4\t:ok\t:read\tnil
"""


def test_porcupine_etcd_translates_its_meaning() -> None:
    ops = read_porcupine_etcd(ETCD)
    assert [(o.type, o.f, o.value) for o in ops] == [
        ("invoke", "cas", [1, 4]), ("ok", "cas", False),  # the CAS happened and returned false
        ("invoke", "read", None), ("info", "read", None),  # read with unknown result
        ("invoke", "write", 3), ("info", "write", None),
        ("invoke", "read", None), ("ok", "read", None)]  # nil here means the key is absent
    calls = pair(ops)
    assert [c.crashed for c in calls] == [False, True, True, False]
    assert calls[0].output is False and calls[3].output is None
    assert parse(ETCD).init is None and parse(ETCD).format == "porcupine-etcd-log"


def test_knossos_edn_fail_is_dropped_and_nil_read_is_unknown() -> None:
    text = """[{:process 0, :type :invoke, :f :write, :value 1}
 {:process 0, :type :fail, :f :write, :value 1}
 {:process 1, :type :invoke, :f :read, :value nil}
 {:process 1, :type :ok, :f :read, :value nil}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 2, :type :invoke, :f :cas, :value [0 1]}
 {:process 2, :type :ok, :f :cas, :value [0 1]}]"""
    loaded = parse(text)
    assert loaded.format == "knossos-edn" and loaded.init == 0
    assert loaded.ops[3].type == INFO  # a completed read of nil matches anything
    assert loaded.ops[4].process == "nemesis"
    calls = pair(loaded.ops)
    assert [(c.f, c.crashed) for c in calls] == [("read", True), ("cas", False)]
    assert [o.line for o in loaded.ops] == [1, 2, 3, 4, 5, 6, 7]  # each op's own line


def test_knossos_bare_sequence_gives_each_op_its_line() -> None:
    ops = read_knossos_edn('{:process 0 :type :invoke :f :read}\n\n{:process 0 :type :ok :f :read :value 3}\n')
    assert [o.line for o in ops] == [1, 3] and ops[1].value == 3


def test_porcupine_kv_moves_the_key_into_the_value() -> None:
    text = '{:process 0, :type :invoke, :f :append, :key "k", :value "x 0 0 y"}\n' \
           '{:process 0, :type :ok, :f :append, :key "k", :value "x 0 0 y"}\n'
    assert detect_format(text) == "porcupine-kv-edn-lines"
    ops = read_porcupine_kv(text)
    assert ops[0].value == ["k", "x 0 0 y"] and ops[1].type == OK
    assert parse(text).init == ""


def test_jsonl_round_trip_keeps_every_field() -> None:
    ops = [Op(index=0, time=5, type="invoke", process=1, f="write", value=3, node="n2"),
           Op(index=1, time=9, type="ok", process=1, f="write", value=3, node="n2", extra={"error": None, "x": [1]})]
    text = dumps_jsonl(ops)
    assert json.loads(text.splitlines()[0]) == {"index": 0, "time": 5, "type": "invoke", "process": 1,
                                                "f": "write", "value": 3, "node": "n2"}
    assert read_jsonl(text) == ops
    assert detect_format(text) == "jsonl"


def test_edn_export_reads_back_as_the_same_history() -> None:
    ops = read_porcupine_etcd(ETCD)
    back = read_knossos_edn(to_edn(ops), nil_reads_unknown=False)
    assert [(o.type, o.process, o.f, o.value) for o in back] == [(o.type, o.process, o.f, o.value) for o in ops]


def test_never_completed_invoke_counts_as_crashed() -> None:
    ops = read_jsonl('{"type":"invoke","process":0,"f":"write","value":1}\n')
    (call,) = pair(ops)
    assert call.crashed and call.completion is None


@pytest.mark.parametrize("text, line, phrase", [
    ('{"type":"ok","process":0,"f":"read","value":1}\n', 1, "without an invoke"),
    ('{"type":"invoke","process":0,"f":"read"}\n{"type":"invoke","process":0,"f":"read"}\n', 2, "invokes again"),
    ('{"type":"invoke","process":0,"f":"read"}\n{"type":"ok","process":0,"f":"write"}\n', 2, "does not match"),
])
def test_unpaired_ops_name_the_line(text: str, line: int, phrase: str) -> None:
    with pytest.raises(HistoryError) as info:
        pair(read_jsonl(text), file="h.jsonl")
    assert info.value.line == line and phrase in str(info.value) and str(info.value).startswith(f"h.jsonl:{line}:")


def test_bad_input_errors_name_file_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"invoke","process":0,"f":"read"}\n{not json\n')
    with pytest.raises(HistoryError) as info:
        load(bad)
    assert str(info.value).startswith(f"{bad}:2:")
    log = tmp_path / "bad.log"
    log.write_text("INFO  jepsen.util - 1\t:invoke\t:read\tnil\ngarbage\n")
    with pytest.raises(HistoryError) as info:
        load(log)
    assert info.value.line == 2 and info.value.file == str(log)


def test_porcupine_kv_fast_and_general_paths_agree() -> None:
    fast = '{:process 3, :type :ok, :f :get, :key "k", :value "x 1 y"}\n'
    general = '{:type :ok :process 3 :f :get :key "k" :value "x 1 y"} ; reordered\n'
    escaped = '{:process 3, :type :ok, :f :get, :key "k", :value "say \\"hi\\""}\n'
    a, b, c = read_porcupine_kv(fast), read_porcupine_kv(general), read_porcupine_kv(escaped)
    assert a == b and a[0].value == ["k", "x 1 y"] and a[0].process == 3
    assert c[0].value == ["k", 'say "hi"']


def test_edn_element_lines_skip_comments_discards_and_multiline_maps() -> None:
    text = "; header\n[{:a 1}\n ; note\n #_ {:gone 1}\n {:b\n  2}\n {:c 3}]\n"
    assert list(edn.iter_elements(text)) == [({"a": 1}, 2), ({"b": 2}, 5), ({"c": 3}, 7)]
