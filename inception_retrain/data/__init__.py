"""Data: from a source (the demo, a folder, `s3://`, tfds) to a validated manifest.

Owns: finding input files (`image_files`), decoding and validating one (`images`), the demo
dataset (`demo_data`), tfds datasets as files (`tfds_source`), the ingest stage and its spec
(`ingest`, `ingest_spec`), `manifest.parquet` (`manifest`), and the data contract checked on
manifests before training (`contract`, `contract_spec`, `data_reference`) with its
two-sample tests and the record every data check writes (`distribution_tests`).

May import: plumbing.
"""
