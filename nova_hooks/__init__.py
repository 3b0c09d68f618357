"""Nova libvirt integration for SPDK vhost-user-blk volumes."""
