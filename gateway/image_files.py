"""Generated images at rest and the anonymous links that serve them.

Files go through Django's storage API (`default_storage`: the filesystem under TOLLGATE_VAR_DIR/media by
default, any django-storages backend by setting STORAGES, see README), one `ImageOutput` row each. A link is
`{PUBLIC_BASE_URL}/v1/files/images/<token>.<ext>`: the token is the output's random id signed with the
server's secret (django.core.signing), so links cannot be guessed or forged and need no API key. A link
works until its output's `expires_at` (IMAGE_OUTPUT_TTL_DAYS after it was made); after that it answers 410
`output_expired`, and the periodic sweep deletes the file.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from config.errors import ApiError
from gateway.models import ImageOutput
from gateway.providers.base import GeneratedImage

log = logging.getLogger(__name__)

_SALT = "tollgate.image-output"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
PURGE_GRACE = timedelta(days=1)  # files are deleted a day after their links stopped working


def _signer() -> signing.Signer:
    return signing.Signer(salt=_SALT, sep=".")


def output_expiry(now: datetime) -> datetime:
    return now + timedelta(days=settings.IMAGE_OUTPUT_TTL_DAYS)


def _size_of(data: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return 0, 0


def write(images: list[GeneratedImage], *, team_id: int, request_id: str, now: datetime) -> list[ImageOutput]:
    """Write the files and return their (unsaved) rows. A file whose row never commits is an orphan nobody
    links to: `discard` removes it when the caller knows."""
    outputs = []
    expires = output_expiry(now)
    try:
        for index, image in enumerate(images):
            output = ImageOutput(
                team_id=team_id,
                request_id=request_id,
                index=index,
                content_type=image.content_type,
                bytes=len(image.data),
                revised_prompt=image.revised_prompt or "",
                created_at=now,
                expires_at=expires,
            )
            output.width, output.height = _size_of(image.data)
            ext = EXTENSIONS.get(image.content_type, "png")
            output.storage_name = default_storage.save(
                f"images/{now:%Y/%m}/{output.public_id}.{ext}", ContentFile(image.data)
            )
            outputs.append(output)
    except BaseException:
        discard(outputs)
        raise
    return outputs


def store(images: list[GeneratedImage], *, team_id: int, request_id: str, now: datetime) -> list[ImageOutput]:
    """Write the files and their rows."""
    outputs = write(images, team_id=team_id, request_id=request_id, now=now)
    try:
        ImageOutput.objects.bulk_create(outputs)
    except BaseException:
        discard(outputs)
        raise
    return outputs


def discard(outputs: list[ImageOutput]) -> None:
    for output in outputs:
        try:
            default_storage.delete(output.storage_name)
        except OSError:
            log.warning("could not delete %s", output.storage_name)


def path_for(output: ImageOutput) -> str:
    token = _signer().sign(output.public_id)
    return f"/v1/files/images/{token}.{EXTENSIONS.get(output.content_type, 'png')}"


def url_for(output: ImageOutput) -> str:
    return settings.PUBLIC_BASE_URL + path_for(output)


@dataclass(frozen=True, slots=True)
class ServedFile:
    data: bytes
    content_type: str
    expires_at: datetime


def expired() -> ApiError:
    return ApiError(
        410,
        "output_expired",
        f"This image link has expired: outputs are kept for {settings.IMAGE_OUTPUT_TTL_DAYS} days.",
        kind="invalid_request_error",
    )


def open_link(name: str, *, now: datetime | None = None) -> ServedFile:
    """The file behind a link's last path segment (`<token>.<ext>`): 404 for a link we never made, 410 for one
    whose output expired."""
    token = name.rpartition(".")[0] if "." in name else name
    try:
        public_id = _signer().unsign(token)
    except signing.BadSignature:
        raise ApiError(404, "not_found", "No such image.") from None
    now = now or timezone.now()
    output = ImageOutput.objects.filter(public_id=public_id).first()
    if output is None:  # a link we signed whose team (and with it the output) is gone
        raise ApiError(404, "not_found", "No such image.")
    if output.expires_at <= now or not output.storage_name:
        raise expired()
    try:
        with default_storage.open(output.storage_name, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError):
        log.error("image output %s: its file %s is missing", output.public_id, output.storage_name)
        raise ApiError(404, "not_found", "No such image.") from None
    return ServedFile(data, output.content_type, output.expires_at)


def purge_expired(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Delete the files of outputs that expired more than a day ago. Their rows stay (a few hundred bytes), so
    their links keep answering 410 and their jobs still list them."""
    now = now or timezone.now()
    batch = list(
        ImageOutput.objects.filter(expires_at__lte=now - PURGE_GRACE).exclude(storage_name="").order_by("pk")[:limit]
    )
    discard(batch)
    ImageOutput.objects.filter(pk__in=[o.pk for o in batch]).update(storage_name="")
    return len(batch)
