"""The BlobStore contract, run against the local directory and Cloud Storage (fake-gcs)."""

from __future__ import annotations

import threading

import pytest

from shared.platform.ports import AlreadyExists, NotFound, PreconditionFailed


@pytest.fixture
def blobs(backends):
    return backends.blobs


def test_write_then_read_returns_the_same_bytes_and_generation(blobs):
    payload = bytes(range(256)) * 4
    generation = blobs.write("raw/a/b.bin", payload)
    data, read_generation = blobs.read_with_generation("raw/a/b.bin")
    assert data == payload
    assert read_generation == generation
    assert blobs.read("raw/a/b.bin") == payload
    assert blobs.exists("raw/a/b.bin")


def test_missing_object_raises_not_found(blobs):
    with pytest.raises(NotFound):
        blobs.read("nope/missing.csv")
    with pytest.raises(NotFound):
        blobs.read_with_generation("nope/missing.csv")
    assert not blobs.exists("nope/missing.csv")


def test_overwrite_changes_the_generation(blobs):
    first = blobs.write("k", b"one")
    second = blobs.write("k", b"two")
    assert second != first
    assert blobs.read_with_generation("k") == (b"two", second)


def test_second_create_fails_with_already_exists_and_keeps_the_first(blobs):
    blobs.create("models/zone1/v1/model.npz", b"first")
    with pytest.raises(AlreadyExists):
        blobs.create("models/zone1/v1/model.npz", b"second")
    assert blobs.read("models/zone1/v1/model.npz") == b"first"


def test_already_exists_is_distinct_from_precondition_failed():
    assert not issubclass(AlreadyExists, PreconditionFailed)
    assert not issubclass(PreconditionFailed, AlreadyExists)


def test_compare_and_swap_on_generation(blobs):
    generation = blobs.write("pointer", b"v1")
    new_generation = blobs.write_if_generation("pointer", b"v2", generation)
    assert blobs.read_with_generation("pointer") == (b"v2", new_generation)
    with pytest.raises(PreconditionFailed):
        blobs.write_if_generation("pointer", b"stale", generation)
    assert blobs.read("pointer") == b"v2"


def test_generation_zero_means_must_not_exist(blobs):
    blobs.write_if_generation("fresh", b"x", 0)
    assert blobs.read("fresh") == b"x"
    with pytest.raises(AlreadyExists):
        blobs.write_if_generation("fresh", b"y", 0)
    assert blobs.read("fresh") == b"x"


def test_compare_and_swap_on_a_missing_object_fails(blobs):
    with pytest.raises(PreconditionFailed):
        blobs.write_if_generation("absent", b"x", 12345)
    assert not blobs.exists("absent")


def test_list_by_prefix_is_sorted_and_respects_the_prefix(blobs):
    for name in ["raw/b/2.csv", "raw/a/1.csv", "raw/ab/3.csv", "models/x", "rawfile"]:
        blobs.write(name, b".")
    assert blobs.list("raw/") == ["raw/a/1.csv", "raw/ab/3.csv", "raw/b/2.csv"]
    assert blobs.list("raw/a") == ["raw/a/1.csv", "raw/ab/3.csv"]
    assert blobs.list("raw/a/") == ["raw/a/1.csv"]
    assert blobs.list("nothing/") == []
    assert blobs.list() == ["models/x", "raw/a/1.csv", "raw/ab/3.csv", "raw/b/2.csv", "rawfile"]


def test_delete_reports_whether_it_deleted(blobs):
    blobs.write("tmp/x", b"1")
    assert blobs.delete("tmp/x") is True
    assert blobs.delete("tmp/x") is False
    assert not blobs.exists("tmp/x")
    assert blobs.list("tmp/") == []


def test_racing_creates_exactly_one_wins(blobs):
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            blobs.create("claims/once", f"writer-{i}".encode())
            outcomes.append(f"won-{i}")
        except AlreadyExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 5
    assert blobs.read("claims/once") == f"writer-{winners[0][4:]}".encode()


def test_racing_compare_and_swap_loses_no_increment(blobs):
    blobs.write("counter", b"0")
    threads_n, per_thread = 4, 5

    def increment() -> None:
        for _ in range(per_thread):
            while True:
                data, generation = blobs.read_with_generation("counter")
                try:
                    blobs.write_if_generation("counter", str(int(data) + 1).encode(), generation)
                    break
                except PreconditionFailed:
                    continue

    threads = [threading.Thread(target=increment) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(blobs.read("counter")) == threads_n * per_thread


def test_invalid_names_are_refused_by_the_local_store(tmp_path):
    from shared.platform.backends.local_blobs import LocalBlobStore

    store = LocalBlobStore(tmp_path / "b")
    for name in ["", "/abs", "a/../b", "a//b", ".hidden", "a/.lock"]:
        with pytest.raises(ValueError):
            store.write(name, b"x")
