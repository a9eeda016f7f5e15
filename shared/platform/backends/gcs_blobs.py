"""Cloud Storage blob store on google-cloud-storage.

Create-only and compare-and-swap map onto ``if_generation_match`` preconditions
(0 means "must not exist"). Keep conditional objects at or under 8 MiB: the
client switches to resumable uploads above that, and fake-gcs-server ignores
preconditions on those (production honours them).
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import storage

from shared.platform.ports import AlreadyExists, NotFound, PreconditionFailed


class GcsBlobStore:
    """BlobStore on one Cloud Storage bucket."""

    def __init__(self, bucket: str, project: str, client: storage.Client | None = None) -> None:
        self.client = client or storage.Client(project=project)
        self.bucket = self.client.bucket(bucket)

    def read(self, name: str) -> bytes:
        return self.read_with_generation(name)[0]

    def read_with_generation(self, name: str) -> tuple[bytes, int]:
        blob = self.bucket.blob(name)
        try:
            data = blob.download_as_bytes()
        except gexc.NotFound as exc:
            raise NotFound(name) from exc
        # The download response names the generation it served (X-Goog-Generation).
        if blob.generation is None:
            raise NotFound(f"{name}: the server did not report a generation")
        return data, int(blob.generation)

    def _upload(self, name: str, data: bytes, content_type: str | None,
                if_generation_match: int | None) -> int:
        blob = self.bucket.blob(name)
        blob.upload_from_string(data, content_type=content_type or "application/octet-stream",
                                if_generation_match=if_generation_match)
        return int(blob.generation)

    def write(self, name: str, data: bytes, content_type: str | None = None) -> int:
        return self._upload(name, data, content_type, None)

    def create(self, name: str, data: bytes, content_type: str | None = None) -> int:
        try:
            return self._upload(name, data, content_type, 0)
        except gexc.PreconditionFailed as exc:
            raise AlreadyExists(name) from exc

    def write_if_generation(self, name: str, data: bytes, generation: int,
                            content_type: str | None = None) -> int:
        if generation == 0:
            return self.create(name, data, content_type)
        try:
            return self._upload(name, data, content_type, generation)
        except gexc.PreconditionFailed as exc:
            raise PreconditionFailed(f"{name}: generation is not {generation}") from exc

    def exists(self, name: str) -> bool:
        return self.bucket.blob(name).exists()

    def list(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(self.bucket, prefix=prefix or None))

    def delete(self, name: str) -> bool:
        try:
            self.bucket.blob(name).delete()
            return True
        except gexc.NotFound:
            return False
