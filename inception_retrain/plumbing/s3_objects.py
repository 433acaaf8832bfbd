"""Conditional requests on an S3-compatible store, and the server's own clock.

What a lock on an object store needs and fsspec has no call for (`s3_lease` builds on it):

    >>> store, key = ObjectStore.for_location("s3://features/cache/3f2a/.lease")
    >>> etag = store.put(key, b"{...}", if_none_match=True)   # 412 if the key exists
    >>> store.put(key, b"{...}", if_match=etag)               # 412 if someone wrote it since
    >>> store.get(key)                                        # Stat(etag, age_s, body) or None
    >>> store.delete(key, if_match=etag)                      # 412 if it is not ours any more

Semantics:
  * Every request goes through the product's one cached file system (`storage`), so it uses
    the same credentials, endpoint and client as every other object-store call.
  * `put(if_none_match=True)` is `PutObject If-None-Match: *` (AWS S3 since 2024-08),
    `if_match` is `If-Match: <ETag>` (since 2024-11); `delete(if_match=...)` is a conditional
    `DeleteObject`. moto 5.2 supports all three. A failed condition raises an error for which
    `precondition_failed` is true: 412 `PreconditionFailed`, or 409
    `ConditionalRequestConflict` (a concurrent conditional request won on AWS).
  * `age_s` is the object's age on the server's clock: the `Date` header of the response
    minus the object's `Last-Modified`, both stamped by the store (1 s resolution). Nobody
    compares two machines' clocks. It is None when the store sends no `Date`.
  * s3fs turns S3 errors into Python ones (412 If-None-Match: FileExistsError, other 412:
    OSError(EINVAL), 404: FileNotFoundError) and keeps botocore's ClientError as
    `__cause__`; `error_code` reads the S3 code from there. A failed condition and a missing
    key are raised as they are; any other failure (no network, bad credentials) is a
    one-line `StorageError`, with the original as its cause.
"""

from __future__ import annotations

import email.utils
import errno
from dataclasses import dataclass

from inception_retrain.plumbing import storage


@dataclass(frozen=True)
class Stat:
    """An object as one GET saw it."""

    etag: str
    age_s: float | None  # server Date - Last-Modified (None without a Date header)
    body: bytes


def error_code(error: BaseException) -> str | None:
    """The S3 error code behind an exception of s3fs or botocore, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
        error = error.__cause__ or error.__context__
    return None


def precondition_failed(error: BaseException) -> bool:
    """A conditional request whose condition did not hold (or that lost a race on AWS)."""
    return error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def missing(error: BaseException) -> bool:
    return isinstance(error, FileNotFoundError) or error_code(error) in ("NoSuchKey", "404")


def transient(error: BaseException) -> bool:
    """A network failure whose request may or may not have been applied."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(error, (BotoConnectionError, HTTPClientError, TimeoutError, ConnectionError)):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ETIMEDOUT, errno.ECONNRESET):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and transient(cause)


def server_age(headers: dict, last_modified) -> float | None:
    """Seconds between `last_modified` and the response's `Date`, both the server's."""
    date = headers.get("date")
    if not date or last_modified is None:
        return None
    now = email.utils.parsedate_to_datetime(date)
    if isinstance(last_modified, str):
        last_modified = email.utils.parsedate_to_datetime(last_modified)
    return (now - last_modified).total_seconds()


class ObjectStore:
    """Conditional object operations on one bucket (keys are relative to the bucket)."""

    def __init__(self, fs, bucket: str):
        self.fs, self.bucket = fs, bucket

    def _one_line(self, key: str, call):
        try:
            return call()
        except Exception as error:
            if precondition_failed(error) or missing(error):
                raise
            text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
            raise storage.StorageError(f"cannot use s3://{self.bucket}/{key}: {reason}") from error

    @classmethod
    def for_location(cls, uri: str) -> tuple[ObjectStore, str]:
        """(the store of `uri`'s bucket, the key `uri` names)."""
        fs, path = storage.remote_filesystem(uri)
        bucket, _, key = path.partition("/")
        return cls(fs, bucket), key.strip("/")

    def _run(self, make_coroutine):
        from fsspec.asyn import sync

        return sync(self.fs.loop, make_coroutine)

    def get(self, key: str) -> Stat | None:
        """The object, its ETag and server age; None if there is none."""

        async def get():
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=key)
            body = await response["Body"].read()
            return response, body

        try:
            response, body = self._one_line(key, lambda: self._run(get))
        except Exception as error:
            if missing(error):
                return None
            raise
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return Stat(response["ETag"], server_age(headers, response.get("LastModified")), body)

    def put(
        self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write `body` in one request (if the condition holds); returns the new ETag."""
        conditions = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        written = self._one_line(
            key,
            lambda: self.fs.call_s3(
                "put_object", Bucket=self.bucket, Key=key, Body=body, **conditions
            ),
        )
        return written["ETag"]

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        conditions = {"IfMatch": if_match} if if_match is not None else {}
        self._one_line(
            key,
            lambda: self.fs.call_s3("delete_object", Bucket=self.bucket, Key=key, **conditions),
        )

    def list(self, prefix: str) -> dict[str, tuple[str, float | None]]:
        """key -> (ETag, server age in s) of every object under `prefix`."""

        async def page(token):
            extra = {"ContinuationToken": token} if token else {}
            return await self.fs._call_s3(
                "list_objects_v2", Bucket=self.bucket, Prefix=prefix, **extra
            )

        found, token = {}, None
        while True:
            response = self._one_line(prefix, lambda token=token: self._run(lambda: page(token)))
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            for item in response.get("Contents", []):
                found[item["Key"]] = (item["ETag"], server_age(headers, item["LastModified"]))
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return found
