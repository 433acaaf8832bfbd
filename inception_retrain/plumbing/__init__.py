"""Plumbing: what every wing may use, and nothing domain-specific.

Owns: expected failures (`errors`), atomic writes and content hashes (`files`), the one
advisory lock (`locks`), every artifact's kind and schema version (`schemas`), where shared
files live, local or `s3://`, behind one file-system abstraction (`storage`), the `--cluster`
setting parsed once (`cluster_spec`) and progress bars (`progress`).

May import: nothing of the project.
"""
