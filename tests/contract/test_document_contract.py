"""The DocumentStore contract, run against SQLite and Firestore (emulator)."""

from __future__ import annotations

import threading

import pytest

from shared.platform.ports import AlreadyExists, ReadAfterWrite, where

NESTED = {"name": "zone1", "rows": 144, "score": 0.97, "ok": True, "none": None,
          "checks": {"ranges": {"passed": True, "value": 1.0}},
          "batches": ["b1", "b2"], "quantiles": {"Temperature": [1.5, 2.5, 3.5]}}


@pytest.fixture
def docs(backends):
    return backends.documents


def test_set_then_get_round_trips_json_values(docs):
    docs.set("batches", "b1", NESTED)
    assert docs.get("batches", "b1") == NESTED


def test_get_missing_is_none(docs):
    assert docs.get("batches", "missing") is None


def test_set_replaces_the_whole_document(docs):
    docs.set("c", "d", {"a": 1, "b": 2})
    docs.set("c", "d", {"a": 3})
    assert docs.get("c", "d") == {"a": 3}


def test_create_if_absent_fails_when_the_document_exists(docs):
    docs.create("claims", "event-1", {"owner": "first"})
    with pytest.raises(AlreadyExists):
        docs.create("claims", "event-1", {"owner": "second"})
    assert docs.get("claims", "event-1") == {"owner": "first"}


def test_delete_removes_and_tolerates_absence(docs):
    docs.set("c", "x", {"v": 1})
    docs.delete("c", "x")
    assert docs.get("c", "x") is None
    docs.delete("c", "x")


def test_ids_firestore_refuses_are_refused_everywhere(docs):
    for bad in ["a/b", "__reserved__", ""]:
        with pytest.raises(ValueError):
            docs.set("c", bad, {"v": 1})


def _seed_models(docs) -> None:
    rows = [("m1", "zone1", "2017-01-08", 3.1), ("m2", "zone1", "2017-01-15", 2.9),
            ("m3", "zone2", "2017-01-15", 4.0), ("m4", "zone1", "2017-01-22", 2.7),
            ("m5", "zone1", "2017-01-29", 2.8)]
    for doc_id, target, created, mape in rows:
        docs.set("models", doc_id, {"target": target, "created_at": created, "mape": mape})
    docs.set("models", "m6", {"target": "zone1"})  # no created_at: left out when ordering on it


def test_query_equality_order_and_limit(docs):
    _seed_models(docs)
    got = docs.query(where("models", ("target", "==", "zone1"), order_by="created_at",
                           descending=True, limit=3))
    assert [doc_id for doc_id, _ in got] == ["m5", "m4", "m2"]
    assert got[0][1] == {"target": "zone1", "created_at": "2017-01-29", "mape": 2.8}


def test_query_ascending_excludes_documents_without_the_ordering_field(docs):
    _seed_models(docs)
    got = docs.query(where("models", ("target", "==", "zone1"), order_by="created_at"))
    assert [doc_id for doc_id, _ in got] == ["m1", "m2", "m4", "m5"]


def test_query_range_filter(docs):
    _seed_models(docs)
    got = docs.query(where("models", ("mape", "<", 2.95), order_by="mape"))
    assert [doc_id for doc_id, _ in got] == ["m4", "m5", "m2"]
    got = docs.query(where("models", ("created_at", ">=", "2017-01-22"), order_by="created_at"))
    assert [doc_id for doc_id, _ in got] == ["m4", "m5"]


def test_query_without_filters_returns_the_collection_by_id(docs):
    _seed_models(docs)
    docs.set("other", "z", {"target": "zone1"})
    got = docs.query(where("models"))
    assert [doc_id for doc_id, _ in got] == ["m1", "m2", "m3", "m4", "m5", "m6"]


def test_nested_field_query(docs):
    docs.set("batches", "a", {"checks": {"score": 0.7}})
    docs.set("batches", "b", {"checks": {"score": 0.9}})
    got = docs.query(where("batches", ("checks.score", ">=", 0.8)))
    assert [doc_id for doc_id, _ in got] == ["b"]


def test_transaction_commits_every_write_or_none(docs):
    docs.set("pointers", "zone1", {"version": "v1"})
    docs.set("claims", "taken", {"by": "someone"})

    def promote(txn):
        assert txn.get("pointers", "zone1") == {"version": "v1"}
        txn.set("pointers", "zone1", {"version": "v2"})
        txn.create("claims", "taken", {"by": "me"})

    with pytest.raises(AlreadyExists):
        docs.transaction(promote)
    assert docs.get("pointers", "zone1") == {"version": "v1"}
    assert docs.get("claims", "taken") == {"by": "someone"}


def test_transaction_refuses_a_read_after_a_write(docs):
    def bad(txn):
        txn.set("c", "a", {"v": 1})
        txn.get("c", "b")

    with pytest.raises(ReadAfterWrite):
        docs.transaction(bad)
    assert docs.get("c", "a") is None


def increment(docs, collection: str, doc_id: str) -> int:
    """Read, add one and write back in one transaction; the value written."""

    def run(txn) -> int:
        n = (txn.get(collection, doc_id) or {"n": 0})["n"] + 1
        txn.set(collection, doc_id, {"n": n})
        return n

    return docs.transaction(run)


def test_a_transaction_returns_what_its_function_returns(docs):
    assert increment(docs, "c", "n") == 1
    assert increment(docs, "c", "n") == 2
    assert docs.get("c", "n") == {"n": 2}


def test_two_threads_racing_one_compare_and_swap_exactly_one_wins(docs):
    docs.set("pointers", "zone1", {"version": "v1", "history": []})
    barrier = threading.Barrier(2)
    results: dict[str, bool] = {}

    def promote(candidate: str) -> None:
        def cas(txn):
            current = txn.get("pointers", "zone1")
            if current["version"] != "v1":
                return False
            txn.set("pointers", "zone1", {"version": candidate,
                                          "history": current["history"] + [candidate]})
            return True

        barrier.wait()
        results[candidate] = docs.transaction(cas)

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("v2", "v3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    winner = next(v for v, won in results.items() if won)
    assert docs.get("pointers", "zone1") == {"version": winner, "history": [winner]}


def test_racing_transactions_lose_no_increment(docs):
    # Small on purpose: the Firestore client backs off a second or more per collision.
    threads_n, per_thread = 3, 2

    def work() -> None:
        for _ in range(per_thread):
            increment(docs, "counters", "c")

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert docs.get("counters", "c") == {"n": threads_n * per_thread}



def test_a_non_finite_number_is_refused_by_the_embedded_store_and_the_collection_stays_readable(tmp_path):
    """SQLite's JSON functions cannot read NaN: one such document would break every later query.
    (Firestore stores NaN natively, so this holds for the embedded store alone.)"""
    from shared.platform.backends.sqlite_documents import SqliteDocumentStore

    docs = SqliteDocumentStore(tmp_path / "documents.sqlite")
    docs.set("c", "ok", {"target": "t", "mape": 1.0})
    with pytest.raises(ValueError, match="non-finite"):
        docs.set("c", "bad", {"target": "t", "mape": float("nan")})
    assert [i for i, _ in docs.query(where("c", ("target", "==", "t")))] == ["ok"]
