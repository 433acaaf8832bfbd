"""Data: from a source (the demo, a folder, `s3://`, tfds) to a validated manifest.

Owns: finding input files (`image_files`), decoding and validating one (`images`), the demo
dataset (`demo_data`), tfds datasets as files (`tfds_source`), the ingest stage and its spec
(`ingest`, `ingest_spec`) and `manifest.parquet` (`manifest`).

May import: plumbing.
"""
