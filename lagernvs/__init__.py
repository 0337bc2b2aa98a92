"""LagerNVS: real-time feed-forward novel view synthesis."""
