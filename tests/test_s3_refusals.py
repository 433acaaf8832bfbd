"""Bad object-store settings are refused before any work, in one line that names the fix.

Real endpoints on 127.0.0.1: moto's server (plain, and with IAM authentication on, so bad
keys are refused as AWS refuses them), a port nobody listens on, a listener that accepts
and never answers, and one whose full accept queue makes the kernel drop SYNs (as a
firewall's DROP rule does). The check (`storage.check_reachable`, `plumbing.s3_probe`)
makes one request with short time-outs; how long each refusal takes is measured in
bench/refusal.py, not asserted here. What these tests assert is that each ends (pytest's
own time-out would catch a hang), and what it says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from s3_fixtures import (
    CREDENTIALS,
    MotoServer,
    SilentListener,
    SynDropListener,
    forget_file_systems,
    moto_with_bucket,
    refusing_port,
)

from inception_retrain.plumbing import storage

CLI = Path(sys.executable).parent / "inception-retrain"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_with_bucket(tmp_path_factory.mktemp("moto-refusals"), "bucket") as server:
        yield server


@pytest.fixture(scope="module")
def moto_auth(tmp_path_factory):
    """moto with authentication on: its first 4 requests are free (bucket, user, key,
    policy), then only the key made here is accepted."""
    import boto3

    server = MotoServer(
        tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    ).start()
    server.client(**_keys(CREDENTIALS)).create_bucket(Bucket="bucket")
    iam = boto3.client("iam", endpoint_url=server.endpoint, **_keys(CREDENTIALS))
    iam.create_user(UserName="u")
    key = iam.create_access_key(UserName="u")["AccessKey"]
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [allow]}
    iam.put_user_policy(UserName="u", PolicyName="all", PolicyDocument=json.dumps(policy))
    server.key = (key["AccessKeyId"], key["SecretAccessKey"])
    try:
        yield server
    finally:
        server.kill()


def _keys(values: dict) -> dict:
    return {
        "aws_access_key_id": values["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": values["AWS_SECRET_ACCESS_KEY"],
        "region_name": values["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def endpoint(monkeypatch):
    """Point the S3 client at an endpoint for one test (the standard variables)."""

    def point(url: str, key_id: str = "testing", secret: str = "testing") -> str:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        forget_file_systems()
        return url

    yield point
    forget_file_systems()


def refused(uri: str, *expected: str) -> str:
    with pytest.raises(storage.StorageError) as caught:
        storage.check_reachable(uri, "feature cache")
    message = str(caught.value)
    assert message.startswith(f"feature cache {uri} is not reachable: "), message
    assert "\n" not in message and "Traceback" not in message
    for text in expected:
        assert text in message, message
    return message


def test_a_reachable_bucket_passes_and_a_missing_one_is_named(moto, endpoint):
    endpoint(moto.endpoint)
    assert storage.check_reachable("s3://bucket/cache", "feature cache") == "s3://bucket/cache"
    refused("s3://no-such-bucket/x", f"bucket 'no-such-bucket' does not exist at {moto.endpoint}")


def test_bad_keys_are_told_apart(moto_auth, endpoint):
    key_id, secret = moto_auth.key
    endpoint(moto_auth.endpoint, key_id, secret)
    storage.check_reachable("s3://bucket/x", "feature cache")  # the right key passes
    endpoint(moto_auth.endpoint, key_id, "wrong")
    refused("s3://bucket/x", "the secret key does not match", "check AWS_SECRET_ACCESS_KEY")
    endpoint(moto_auth.endpoint, "AKIAUNKNOWN000000000", secret)
    refused("s3://bucket/x", "does not know this access key id", "AWS_ACCESS_KEY_ID")


def test_no_credentials_at_all(moto, endpoint, monkeypatch, tmp_path):
    endpoint(moto.endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role here
    refused("s3://bucket/x", "no S3 credentials found", "AWS_ACCESS_KEY_ID")


def test_an_endpoint_that_refuses(endpoint):
    url = endpoint(f"http://127.0.0.1:{refusing_port()}")
    refused("s3://bucket/x", f"nothing accepts connections at {url}", "start the S3 server")


def test_an_endpoint_that_never_answers(endpoint):
    with SilentListener() as listener:
        url = endpoint(f"http://127.0.0.1:{listener.port}")
        refused("s3://bucket/x", f"{url} accepted the connection but sent no answer")


def test_an_endpoint_whose_packets_are_dropped(endpoint):
    try:
        listener = SynDropListener()
    except RuntimeError as error:
        pytest.skip(str(error))
    with listener:
        url = endpoint(f"http://127.0.0.1:{listener.port}")
        refused("s3://bucket/x", f"no answer from {url}", "firewall dropping packets")


def test_the_cli_refuses_a_run_on_a_refusing_endpoint_in_one_line(tmp_path, small_demo_dir):
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{refusing_port()}",
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(
        [str(CLI), "run", "--data", str(small_demo_dir), "--workdir", str(tmp_path / "w")]
        + ["--feature-cache", "s3://bucket/cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: feature cache s3://bucket/cache is not reachable: ")
    assert "connection refused" in line and "AWS_ENDPOINT_URL" in line
    assert not (tmp_path / "w").exists()  # refused before anything was written
