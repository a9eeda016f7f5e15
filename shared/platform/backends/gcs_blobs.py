"""Cloud Storage blob store on google-cloud-storage.

Create-only writes map onto the ``if_generation_match=0`` precondition. Keep
create-only objects at or under 8 MiB: the client switches to resumable uploads
above that, and fake-gcs-server ignores preconditions on those (production
honours them).
"""

from __future__ import annotations

import google.cloud.storage as storage
from google.api_core import exceptions as gexc

from shared.platform.ports import AlreadyExists, NotFound


class GcsBlobStore:
    """BlobStore on one Cloud Storage bucket."""

    def __init__(self, bucket: str, project: str, client: storage.Client | None = None) -> None:
        self.client = client or storage.Client(project=project)
        self.bucket = self.client.bucket(bucket)

    def read(self, name: str) -> bytes:
        try:
            return bytes(self.bucket.blob(name).download_as_bytes())
        except gexc.NotFound as exc:
            raise NotFound(name) from exc

    def _upload(self, name: str, data: bytes, content_type: str | None,
                if_generation_match: int | None) -> None:
        self.bucket.blob(name).upload_from_string(
            data, content_type=content_type or "application/octet-stream",
            if_generation_match=if_generation_match)

    def write(self, name: str, data: bytes, content_type: str | None = None) -> None:
        self._upload(name, data, content_type, None)

    def create(self, name: str, data: bytes, content_type: str | None = None) -> None:
        try:
            self._upload(name, data, content_type, 0)
        except gexc.PreconditionFailed as exc:
            raise AlreadyExists(name) from exc

    def location(self, name: str) -> str:
        return f"gs://{self.bucket.name}/{name}"

    def list(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(self.bucket, prefix=prefix or None))
