"""The on-disk bank format: what `extract` writes and `OSSMBank` reads."""

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Columns holding one vector per row (stored as fixed-size lists).
VECTOR_COLUMNS = ("ossm", "embedding", "pooled", "loading", "part_overlap")
