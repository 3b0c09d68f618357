"""An all-in-one OpenStack cloud with spdk-openstack's plugins, on one host
(``tools/cloud``): real services from PyPI, private MariaDB, RabbitMQ and
libvirtd, SPDK's nvmf_tgt and vhost, driven by the ``openstack`` client
and tempest."""
