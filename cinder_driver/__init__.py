"""Cinder volume driver for SPDK lvols over NVMe/TCP."""
