"""The storage node's ``nvmf_tgt``: its startup config and its lvstores.

The startup config (``nvmf_tgt --json``) re-creates the base bdevs, and
SPDK finds the lvstores on them again by examining their metadata. It also
raises the NVMe-oF target's subsystem limit: the Cinder driver exports each
volume as a subsystem of its own, and SPDK v25.09 allows 1024 subsystems
by default (``SPDK_NVMF_DEFAULT_MAX_SUBSYSTEMS``, lib/nvmf/nvmf.c), one of
them the discovery subsystem, which it settles when the framework starts:
``nvmf_set_max_subsystems`` works only from the startup config (or under
``--wait-for-rpc``). The NVMe-oF transport is left out on purpose: the
Cinder driver creates it and takes its absence as the sign that SPDK
restarted and lost its exports.
"""

import grp
import math
import os
import time

from spdk_common import exception as spdk_exc
from spdk_common import memory
from spdk_common import naming
from spdk_common import rpc

AIO_BDEV = 'aio0'
NVME_CONTROLLER = 'nvme%d'

# Subsystems the target allows: one per exported volume, one per image copy
# in flight (a temporary export), and SPDK's own discovery subsystem. A
# subsystem slot that is not used costs one ``spdk_nvmf_subsystem_poll_group``
# per poll group (calloc'd, not hugepages) and a bit: nvmf_tgt with one
# reactor started with 35.4 MiB RSS at 1024 slots, 35.7 MiB at 8192
# (doc/source/benchmarks.rst, storage_scale).
DEFAULT_MAX_SUBSYSTEMS = 8192
# What SPDK v25.09 allows without nvmf_set_max_subsystems.
SPDK_DEFAULT_MAX_SUBSYSTEMS = 1024
# SPDK's own subsystems among them: the discovery subsystem.
SPDK_OWN_SUBSYSTEMS = 1

# nvmf_tgt's hugepage memory (its -s), measured with SPDK v25.09
# (benchmarks/storage_scale.py, doc/source/benchmarks.rst): its default
# buffer pools map memory.DEFAULT_POOLS_FOOTPRINT_MIB; an export nobody is
# connected to costs next to nothing of it (4000 exports: +0.75 MiB of DPDK
# heap, +36 MiB of ordinary memory, i.e. ~9 KiB each with its lvol), but
# every NVMe/TCP queue pair a host connects, admin or I/O, takes
# QUEUE_PAIR_MIB with the transport's defaults (max_queue_depth 128 x
# in_capsule_data_size 4 KiB of in-capsule buffers, and 2 x 128 + 1 PDUs:
# lib/nvmf/tcp.c nvmf_tcp_qpair_init_mem_resource).
QUEUE_PAIR_MIB = 0.77
# An SPDK initiator (the compute agent's bdev_nvme) opens an admin queue
# pair and one I/O queue pair per reactor that serves the volume: 2. The
# Linux kernel's opens one I/O queue pair per CPU of the compute node.
QUEUE_PAIRS_PER_CONNECTION = 2
PAGE_MIB = 2


def target_config(aio_file=None, aio_block_size=512, nvme_pci=(),
                  max_subsystems=DEFAULT_MAX_SUBSYSTEMS):
    """The ``--json`` config of the base bdevs (an AIO file or NVMe
    devices) and of the NVMe-oF target's subsystem limit.

    :raises ValueError: when neither or both kinds of device are given, or
        when ``max_subsystems`` leaves no room for a single export.
    """
    if max_subsystems <= SPDK_OWN_SUBSYSTEMS:
        raise ValueError('max_subsystems=%s leaves no subsystem for a volume '
                         '(SPDK keeps %d for itself)'
                         % (max_subsystems, SPDK_OWN_SUBSYSTEMS))
    if bool(aio_file) == bool(nvme_pci):
        raise ValueError('Give the storage target either a backing file or '
                         'NVMe PCI addresses, not %s'
                         % ('both' if aio_file else 'neither'))
    if aio_file:
        # fallocate: unmap and write-zeroes punch holes in the file.
        # Without it SPDK's AIO bdev has neither, so a deleted lvol's
        # clusters keep its bytes (its clear method does nothing), and a
        # new thin lvol that takes such a cluster for a small write serves
        # the rest of it to its guest: another volume's data.
        methods = [{'method': 'bdev_aio_create',
                    'params': {'name': AIO_BDEV, 'filename': aio_file,
                               'block_size': aio_block_size,
                               'fallocate': True}}]
    else:
        methods = [{'method': 'bdev_nvme_attach_controller',
                    'params': {'name': NVME_CONTROLLER % index,
                               'trtype': 'PCIe', 'traddr': address}}
                   for index, address in enumerate(nvme_pci)]
    # No nvmf_create_transport here, ever: see the module's docstring.
    nvmf = [{'method': 'nvmf_set_max_subsystems',
             'params': {'max_subsystems': max_subsystems}}]
    return {'subsystems': [{'subsystem': 'bdev', 'config': methods},
                           {'subsystem': 'nvmf', 'config': nvmf}]}


def max_exports(config):
    """How many volumes the target of ``config`` can export at once (image
    copies in flight take from them too).
    """
    for subsystem in config['subsystems']:
        for entry in subsystem['config']:
            if entry['method'] == 'nvmf_set_max_subsystems':
                return (entry['params']['max_subsystems'] -
                        SPDK_OWN_SUBSYSTEMS)
    return SPDK_DEFAULT_MAX_SUBSYSTEMS - SPDK_OWN_SUBSYSTEMS


def target_memory_mib(connections,
                      queue_pairs=QUEUE_PAIRS_PER_CONNECTION):
    """The hugepage memory (``nvmf_tgt -s``, and what Nova must leave it)
    for ``connections`` connected NVMe-oF controllers: one per attached
    volume and host, each with ``queue_pairs`` queue pairs.

    DPDK maps more than ``-s`` on demand while free hugepages last, so a
    smaller ``-s`` fails only once the host's pool is spent, or guests
    have taken it: connections past that are refused.
    """
    if connections < 0 or queue_pairs < 1:
        raise ValueError('connections=%s, queue_pairs=%s: give a count of '
                         'connections and at least one queue pair each'
                         % (connections, queue_pairs))
    mib = (memory.DEFAULT_POOLS_FOOTPRINT_MIB +
           connections * queue_pairs * QUEUE_PAIR_MIB)
    return PAGE_MIB * math.ceil(mib / PAGE_MIB)


def base_bdevs(config):
    """Names of the bdevs that carry lvstores, in config order."""
    names = []
    for subsystem in config['subsystems']:
        for entry in subsystem['config']:
            params = entry['params']
            if entry['method'] == 'bdev_aio_create':
                names.append(params['name'])
            elif entry['method'] == 'bdev_nvme_attach_controller':
                # The first namespace carries the lvstore.
                names.append(naming.namespace_bdev_name(params['name']))
    return names


def lvstore_names(bdevs, prefix):
    """{lvstore name: base bdev}: ``<prefix>0``, ``<prefix>1``, ..."""
    return {'%s%d' % (prefix, index): bdev
            for index, bdev in enumerate(bdevs)}


def wait_for_target(socket_path, timeout, interval=0.5):
    """An :class:`SPDKClient` once ``nvmf_tgt`` answers on its socket.

    :raises spdk_exc.SPDKUnavailable: when it does not within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    client = rpc.SPDKClient(socket_path, timeout=max(timeout, 1))
    while True:
        try:
            client.call('spdk_get_version')
            return client
        except spdk_exc.SPDKUnavailable:
            if time.monotonic() >= deadline:
                client.close()
                raise
            time.sleep(interval)


def ensure_lvstores(client, wanted):
    """Create the lvstores of ``{name: bdev}`` that SPDK does not have.

    One listing call answers for all of them; an lvstore that exists under
    its name is left alone whatever it sits on, so a second stack never
    touches the data of the first.

    :returns: the names created, sorted.
    """
    present = {lvs['name'] for lvs in client.call('bdev_lvol_get_lvstores')}
    created = []
    for name, bdev in sorted(wanted.items()):
        if name in present:
            continue
        client.call('bdev_lvol_create_lvstore',
                    {'bdev_name': bdev, 'lvs_name': name})
        created.append(name)
    return created


def restrict_socket(socket_path, group, mode):
    """Give the RPC socket to ``group`` with ``mode``: only cinder-volume
    may talk to SPDK, which has no authentication of its own.
    """
    os.chown(socket_path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(socket_path, mode)
