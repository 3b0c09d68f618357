"""Cinder volume driver for SPDK lvols over NVMe/TCP (``cinder_driver.spdk``)."""
