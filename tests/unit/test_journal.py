"""The durable journal: what is synced survives a crash, a torn tail is dropped, corruption refuses."""

from __future__ import annotations

import pytest

from consensus.engine.journal import JOURNAL, MAGIC, DurableJournal, JournalCorrupt, JournalUnavailable, encode_record
from consensus.engine.storage import DiskStorage, MemoryStorage


def entries(journal):
    return [journal[i] for i in range(len(journal))]


def test_a_new_journal_starts_with_pysyncobjs_no_op_and_is_durable_at_once():
    storage = MemoryStorage()
    DurableJournal(storage)
    storage.crash()
    assert entries(DurableJournal(storage)) == [(b"\x01", 1, 0)]


def test_every_add_is_synced_before_it_returns_and_survives_a_crash():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    for i in range(2, 6):
        journal.add(b"cmd%d" % i, i, 1)
    storage.crash()
    assert [e[1] for e in entries(DurableJournal(storage))] == [1, 2, 3, 4, 5]


def test_a_batch_syncs_once_at_its_end_and_nothing_before():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    before = storage.syncs
    with journal.batch():
        for i in range(2, 12):
            journal.add(b"x", i, 1)
        assert storage.syncs == before  # a crash now loses the whole batch: nothing was acknowledged
    assert storage.syncs == before + 1


def test_an_unsynced_batch_is_lost_in_a_crash():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    batch = journal.batch()
    batch.__enter__()
    journal.add(b"x", 2, 1)
    storage.crash()
    assert len(DurableJournal(storage)) == 1


def test_term_and_vote_are_durable_before_set_current_term_returns():
    storage = MemoryStorage()
    DurableJournal(storage).setCurrentTerm(7, "127.0.0.1:7002")
    storage.crash()
    journal = DurableJournal(storage)
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (7, "127.0.0.1:7002")


@pytest.mark.parametrize("torn", [3, 9, 20])
def test_a_torn_last_record_is_dropped_with_the_good_ones_kept(torn):
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    journal.add(b"kept", 2, 1)
    with journal.batch():
        journal.add(b"torn-record-payload", 3, 1)
        storage.crash(torn_bytes=torn)  # the power went off while the record was being written
    assert entries(DurableJournal(storage))[-1] == (b"kept", 2, 1)


def test_a_damaged_record_followed_by_good_ones_refuses_to_start():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    journal.add(b"aaaa", 2, 1)
    journal.add(b"bbbb", 3, 1)
    data = bytearray(storage.read(JOURNAL))
    data[len(MAGIC) + len(encode_record(b"\x01", 1, 0)) + 20] ^= 0xFF  # flip a byte inside record 2
    storage.written[JOURNAL] = data
    with pytest.raises(JournalCorrupt, match="checksum"):
        DurableJournal(storage)


def test_deleting_a_suffix_and_compacting_a_prefix_survive_a_crash():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    for i in range(2, 10):
        journal.add(b"v%d" % i, i, 1)
    journal.deleteEntriesFrom(6)  # positions 6.. are indexes 7..9
    journal.add(b"new7", 7, 2)
    journal.deleteEntriesTo(3)  # a snapshot covers indexes 1..3
    storage.crash()
    assert [(e[1], e[2]) for e in entries(DurableJournal(storage))] == [(4, 1), (5, 1), (6, 1), (7, 2)]


def test_a_failing_disk_stops_every_write_until_it_recovers():
    storage = MemoryStorage()
    journal = DurableJournal(storage)
    storage.failing = True
    with pytest.raises(JournalUnavailable):
        journal.add(b"x", 2, 1)
    assert journal.failure is not None
    with pytest.raises(JournalUnavailable):
        journal.setCurrentTerm(3, "someone")  # no vote while the disk fails
    assert len(journal) == 1  # nothing half-appended in memory
    assert not journal.recover()
    storage.failing = False
    assert journal.recover() and journal.failure is None
    journal.add(b"x", 2, 1)
    storage.crash()
    assert len(DurableJournal(storage)) == 2


def test_disk_storage_round_trips(tmp_path):
    journal = DurableJournal(DiskStorage(str(tmp_path)))
    journal.add(b"on disk", 2, 4)
    journal.setCurrentTerm(4, None)
    journal._destroy()
    reopened = DurableJournal(DiskStorage(str(tmp_path)))
    assert reopened[-1] == (b"on disk", 2, 4) and reopened.getCurrentTerm() == 4
