"""Configuration a deployment of spdk-openstack writes (devstack,
operators)."""
