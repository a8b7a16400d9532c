"""The collector: body decoding, write-key auth, per-message validation and normalization, limits."""
