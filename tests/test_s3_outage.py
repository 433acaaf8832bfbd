"""The S3 server stops in the middle of an extraction into a cache on it (moto's server).

moto keeps no state across a restart, so it runs with its request recorder on: it logs each
request once its whole body has arrived (as S3 stores an object only once it is complete),
and after the restart the recording is replayed, which brings the bucket back as the killed
server left it. So this shows what the product does, not what moto guarantees: the
extraction writes every part in one request (never a visible partial part), fails with one
line when the store goes away, and a rerun once it is back computes only the images not yet
cached, with every image cached exactly once. Marked `extended` (`make test-extended`).
"""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq
import pytest
from s3_fixtures import MotoServer, s3_env

from inception_retrain.features import feature_cache
from inception_retrain.plumbing import storage

BUCKET = "features"


def whole_ids(cache_dir: str) -> list[str]:
    """Every content id of every visible part, each part read whole."""
    from inception_retrain.features.feature_parts import parts

    found = []
    for part in parts(cache_dir):
        with storage.open_input(part) as handle:
            found += pq.read_table(handle).column("content_id").to_pylist()
    return found


@pytest.mark.extended
def test_the_s3_server_stopped_mid_extraction_leaves_no_partial_part_and_a_rerun_resumes(
    tmp_path, small_demo_dir, monkeypatch
):
    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.ingest import ingest
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.training.head_spec import HeadSpec

    # The writer's lease is recorded too: replayed, it is fresh again, so keep its TTL short.
    monkeypatch.setattr(feature_cache, "LEASE_TTL_S", 3.0)
    monkeypatch.setattr(feature_cache, "LEASE_SKEW_S", 0.5)
    server = MotoServer(tmp_path / "moto", record=True).start()
    try:
        with s3_env(server):
            client = server.client()
            client.create_bucket(Bucket=BUCKET)
            config = RetrainConfig(
                data=str(small_demo_dir),
                workdir=tmp_path / "work",
                weights="random:0",
                image_size=75,
                split_fractions=(0.5, 0.2, 0.3),
                head=HeadSpec(hidden_units=(16, 16)),
                feature_cache=f"s3://{BUCKET}/cache",
            )
            manifest = ingest(config.ingest, tmp_path / "run-1")

            def stop_once_a_part_is_stored() -> None:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="cache/")
                    if any("/part-" in o["Key"] for o in listed.get("Contents", [])):
                        server.kill()
                        return
                    time.sleep(0.05)

            watcher = threading.Thread(target=stop_once_a_part_is_stored, daemon=True)
            watcher.start()
            with pytest.raises(storage.StorageError) as caught:
                extract_features(manifest, config.extraction, tmp_path / "run-1", part_rows=4)
            watcher.join(timeout=60)
            message = str(caught.value)
            assert message.startswith(f"cannot use s3://{BUCKET}/cache/"), message
            assert "\n" not in message

            server.start()  # the same port, an empty server: replay what the old one stored
            server.replay()
            cache_dir = f"s3://{BUCKET}/cache/{next(iter(_fingerprints(client)))}"
            before = whole_ids(cache_dir)  # no partial part is visible: each reads whole
            assert len(before) == len(set(before)) and len(before) % 4 == 0
            assert len(before) < manifest.counts["ok"]

            cache = extract_features(manifest, config.extraction, tmp_path / "run-2", part_rows=4)
            ok = manifest.counts["ok"]
            assert (cache.computed, cache.reused) == (ok - len(before), len(before))
            after = whole_ids(cache_dir)
            assert len(after) == len(set(after)) == ok  # every image exactly once
    finally:
        server.kill()


def _fingerprints(client) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="cache/").get("Contents", [])
    return {o["Key"].split("/")[1] for o in listed if o["Key"].count("/") >= 2}
