"""The start-up check of an `s3://` location: one request, short fuses, one line naming the fix.

    >>> probe("s3://features/team-a", "feature cache")   # None, or the one line of what is wrong

`storage.check_reachable` calls it for every remote location a run names, before any work,
and raises its line as a StorageError.

Why a private, short-fused client: s3fs's defaults are made to ride out transient errors, not
to refuse at once. Two retry layers multiply: botocore's (legacy mode: 5 attempts; in its
`retries` dict `max_attempts` counts *retries*, `total_max_attempts` counts requests) and
s3fs's own (`S3FileSystem.retries = 5`, a class attribute, with back-off), on top of s3fs's
5 s connect and 15 s read time-outs. With those, a refused connection took 6.8 s here, a
dropped SYN 38.7 s and a server that never answers minutes. The probe makes exactly one
ListObjectsV2 request (MaxKeys=1: a HEAD would give no reason, a bare 403) with 1.5 s
connect and read time-outs inside a 2 s deadline, on a private file-system instance
(`skip_instance_cache`), so the cached instance the work uses keeps its patient settings.
Credentials and the endpoint come from the same standard environment (`AWS_*`,
`~/.aws`, `AWS_ENDPOINT_URL[_S3]`).
"""

from __future__ import annotations

import os

CONNECT_TIMEOUT_S = 1.5
READ_TIMEOUT_S = 1.5
DEADLINE_S = 2.0  # the request itself: a server that trickles bytes resets a read time-out
PROBE_CONFIG = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "read_timeout": READ_TIMEOUT_S,
    "retries": {"total_max_attempts": 1, "mode": "standard"},
}


def _chain(error: BaseException | None) -> list[BaseException]:
    seen, chain = set(), []
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _code(chain: list[BaseException]) -> str | None:
    for error in chain:
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
    return None


def _endpoint(fs) -> str:
    client = getattr(fs, "_s3", None)
    if client is not None:
        return client.meta.endpoint_url
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def explain(error: BaseException, uri: str, endpoint: str, what: str = "location") -> str:
    """The one line for an error of the probe: what is wrong and what to change."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
        SSLError,
    )

    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    head = f"{what} {uri} is not reachable"
    chain = _chain(error)
    code = _code(chain)
    names = " ".join(type(e).__name__ for e in chain)
    text = " ".join(str(e) for e in chain)

    def any_of(*types) -> bool:
        return any(isinstance(e, types) for e in chain)

    if any_of(NoCredentialsError, PartialCredentialsError):
        return (
            f"{head}: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or run where an instance role applies"
        )
    if code == "InvalidAccessKeyId":
        return (
            f"{head}: {endpoint} does not know this access key id: check AWS_ACCESS_KEY_ID / "
            "AWS_PROFILE, and that AWS_ENDPOINT_URL is the right server"
        )
    if code == "SignatureDoesNotMatch":
        return (
            f"{head}: the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY"
        )
    if code in ("ExpiredToken", "TokenRefreshRequired", "InvalidToken"):
        return f"{head}: the session token has expired: refresh the credentials"
    if code == "RequestTimeTooSkewed":
        return f"{head}: this machine's clock is off by more than 15 min: fix its time (NTP)"
    if code == "NoSuchBucket":
        return (
            f"{head}: bucket {bucket!r} does not exist at {endpoint}: create it, or fix the "
            "bucket name or AWS_ENDPOINT_URL"
        )
    if code in ("AccessDenied", "AllAccessDisabled", "403"):
        return (
            f"{head}: access denied: grant these credentials s3:ListBucket on {bucket} and "
            "s3:GetObject, s3:PutObject, s3:DeleteObject on the prefix"
        )
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        return (
            f"{head}: bucket {bucket!r} is in another region: set AWS_DEFAULT_REGION "
            "(or AWS_REGION) to it"
        )
    if any_of(SSLError) or "SSL" in names:
        return (
            f"{head}: the TLS handshake with {endpoint} failed: check http:// or https:// in "
            "AWS_ENDPOINT_URL, or the CA bundle (AWS_CA_BUNDLE)"
        )
    if any_of(ConnectTimeoutError) or "ConnectionTimeoutError" in names:
        return (
            f"{head}: no answer from {endpoint} within {CONNECT_TIMEOUT_S:g} s (host down, "
            "wrong address, or a firewall dropping packets): check AWS_ENDPOINT_URL and the "
            "network"
        )
    if any_of(ReadTimeoutError) or "SocketTimeoutError" in names:
        return (
            f"{head}: {endpoint} accepted the connection but sent no answer within "
            f"{READ_TIMEOUT_S:g} s: is it an S3 server, and is it overloaded or hung?"
        )
    if "Name or service not known" in text or "nodename nor servname" in text or "DNS" in names:
        return f"{head}: cannot resolve the host of {endpoint}: fix AWS_ENDPOINT_URL"
    if any_of(EndpointConnectionError, ConnectionRefusedError):
        return (
            f"{head}: nothing accepts connections at {endpoint} (connection refused): start "
            "the S3 server, or fix the port in AWS_ENDPOINT_URL"
        )
    if any_of(TimeoutError) or "FSTimeoutError" in names:
        return (
            f"{head}: no complete answer from {endpoint} within {DEADLINE_S:g} s: check "
            "AWS_ENDPOINT_URL and the network"
        )
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{head}: {type(error).__name__}" + (f": {first}" if first else "")


def probe_filesystem():
    """A private s3fs instance that makes one short request per call."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, config_kwargs=dict(PROBE_CONFIG))
    fs.retries = 1  # s3fs's own retry loop, per instance (a class attribute otherwise)
    return fs


def probe(uri: str, what: str = "location") -> str | None:
    """List at most one key under `uri`; None if that works, else the one line saying why
    not and what to change."""
    from fsspec.asyn import sync

    bucket, _, prefix = uri.split("://", 1)[-1].partition("/")
    prefix = prefix.strip("/")
    fs = probe_filesystem()
    try:
        sync(fs.loop, fs.set_session)  # credentials and the service model: CPU, no network
        sync(
            fs.loop,
            fs._call_s3,
            "list_objects_v2",
            Bucket=bucket,
            Prefix=f"{prefix}/" if prefix else "",
            MaxKeys=1,
            timeout=DEADLINE_S,
        )
    except Exception as error:
        return explain(error, uri, _endpoint(fs), what)
    return None
