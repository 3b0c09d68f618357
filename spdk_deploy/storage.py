"""The storage node's ``nvmf_tgt``: its startup config and its lvstores.

The startup config (``nvmf_tgt --json``) re-creates only the base bdevs;
SPDK finds the lvstores on them again by examining their metadata. The
NVMe-oF transport is left out on purpose: the Cinder driver creates it and
takes its absence as the sign that SPDK restarted and lost its exports.
"""

import grp
import os
import time

from spdk_common import exception as spdk_exc
from spdk_common import rpc

AIO_BDEV = 'aio0'
NVME_CONTROLLER = 'nvme%d'
# bdev_nvme names a controller's namespaces <controller>n<nsid>; the first
# namespace carries the lvstore.
NVME_BDEV = NVME_CONTROLLER + 'n1'


def target_config(aio_file=None, aio_block_size=512, nvme_pci=()):
    """The ``--json`` config of the base bdevs: an AIO file or NVMe devices.

    :raises ValueError: when neither or both are given.
    """
    if bool(aio_file) == bool(nvme_pci):
        raise ValueError('Give the storage target either a backing file or '
                         'NVMe PCI addresses, not %s'
                         % ('both' if aio_file else 'neither'))
    if aio_file:
        methods = [{'method': 'bdev_aio_create',
                    'params': {'name': AIO_BDEV, 'filename': aio_file,
                               'block_size': aio_block_size}}]
    else:
        methods = [{'method': 'bdev_nvme_attach_controller',
                    'params': {'name': NVME_CONTROLLER % index,
                               'trtype': 'PCIe', 'traddr': address}}
                   for index, address in enumerate(nvme_pci)]
    return {'subsystems': [{'subsystem': 'bdev', 'config': methods}]}


def base_bdevs(config):
    """Names of the bdevs that carry lvstores, in config order."""
    names = []
    for subsystem in config['subsystems']:
        for entry in subsystem['config']:
            params = entry['params']
            if entry['method'] == 'bdev_aio_create':
                names.append(params['name'])
            elif entry['method'] == 'bdev_nvme_attach_controller':
                names.append(params['name'] + 'n1')
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
