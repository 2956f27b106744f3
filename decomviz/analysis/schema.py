"""The on-disk bank format: what `extract` writes and `OSSMBank` reads."""

FORMAT_VERSION = 2  # 2: shard checksums (sha256, bytes) and input fingerprints (inputs) per shard
READABLE_FORMATS = (1, 2)  # format-1 banks read without checksums; extraction never resumes them
MANIFEST = "manifest.json"
#: Columns holding one vector per row (stored as fixed-size lists).
VECTOR_COLUMNS = ("ossm", "embedding", "pooled", "loading", "part_overlap")
