"""Shim for ``[DEFAULT] compute_driver = spdk_libvirt.SPDKLibvirtDriver``.

Nova imports compute drivers only as ``nova.virt.<compute_driver>``; this
module, installed into nova.virt by spdk-openstack, points at the real one.
"""

from nova_hooks.driver import SPDKLibvirtDriver  # noqa: F401
