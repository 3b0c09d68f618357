"""Tempest plugin for spdk-openstack: API and scenario tests of the Cinder
driver and the vhost-user attach path on a real cloud."""
