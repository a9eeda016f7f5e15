"""The BlobStore contract, run against the local directory and Cloud Storage (fake-gcs)."""

from __future__ import annotations

import threading

import pytest

from shared.platform.ports import AlreadyExists, NotFound


@pytest.fixture
def blobs(backends):
    return backends.blobs


def test_write_then_read_returns_the_same_bytes(blobs):
    payload = bytes(range(256)) * 4
    blobs.write("raw/a/b.bin", payload)
    assert blobs.read("raw/a/b.bin") == payload


def test_missing_object_raises_not_found(blobs):
    with pytest.raises(NotFound):
        blobs.read("nope/missing.csv")


def test_overwrite_replaces_the_bytes(blobs):
    blobs.write("k", b"one")
    blobs.write("k", b"two")
    assert blobs.read("k") == b"two"


def test_second_create_fails_with_already_exists_and_keeps_the_first(blobs):
    blobs.create("models/zone1/v1/model.npz", b"first")
    with pytest.raises(AlreadyExists):
        blobs.create("models/zone1/v1/model.npz", b"second")
    assert blobs.read("models/zone1/v1/model.npz") == b"first"


def test_list_by_prefix_is_sorted_and_respects_the_prefix(blobs):
    for name in ["raw/b/2.csv", "raw/a/1.csv", "raw/ab/3.csv", "models/x", "rawfile"]:
        blobs.write(name, b".")
    assert blobs.list("raw/") == ["raw/a/1.csv", "raw/ab/3.csv", "raw/b/2.csv"]
    assert blobs.list("raw/a") == ["raw/a/1.csv", "raw/ab/3.csv"]
    assert blobs.list("raw/a/") == ["raw/a/1.csv"]
    assert blobs.list("nothing/") == []
    assert blobs.list() == ["models/x", "raw/a/1.csv", "raw/ab/3.csv", "raw/b/2.csv", "rawfile"]


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


def test_invalid_names_are_refused_by_the_local_store(tmp_path):
    from shared.platform.backends.local_blobs import LocalBlobStore

    store = LocalBlobStore(tmp_path / "b")
    for name in ["", "/abs", "a/../b", "a//b", ".hidden", "a/.lock"]:
        with pytest.raises(ValueError):
            store.write(name, b"x")
