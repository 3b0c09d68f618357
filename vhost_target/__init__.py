"""The compute-node agent spdk-vhost-target (planned)."""
