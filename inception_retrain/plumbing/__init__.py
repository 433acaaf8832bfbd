"""Plumbing: what every wing may use, and nothing domain-specific.

Owns: expected failures (`errors`), atomic writes and content hashes (`files`), the one
advisory lock (`locks`), every artifact's kind and schema version (`schemas`), where shared
files live, local or `s3://`, behind one file-system abstraction (`storage`), the `--cluster`
setting parsed once (`cluster_spec`) with the shards' time-outs (`shard_policy`), progress
bars (`progress`), the stderr filter that keeps TensorFlow's C++ noise off every process
(`stderr_filter`), and, for object stores, conditional requests (`s3_objects`), the lease
lock built on them (`s3_lease`), the fast start-up probe (`s3_probe`).

May import: nothing of the project.
"""
