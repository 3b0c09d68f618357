"""Tempest plugin for spdk-openstack (planned)."""
