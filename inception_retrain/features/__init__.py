"""Features: images through the frozen backbone, into the content-keyed Parquet cache.

Owns: the backbone and its weights (`backbone`, `backbone_spec`, `weights`,
`weights_file`), preprocessing and augmented views (`preprocess`, `augmentation`,
`tf_data`), the cache's part format (`feature_parts`), a cache folder and its views
(`feature_cache`, `view_cache`), and the extraction stage (`extraction`, `extraction_spec`,
`feature_compute`, `view_extraction`), and the backbone cut in two for fine-tuning: the
frozen prefix and a trainable copy of the block(s) above it (`backbone_block`).

May import: plumbing, data.
"""
