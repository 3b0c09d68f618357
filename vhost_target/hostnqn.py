"""This compute node's NVMe host NQN, as the storage side's ACL knows it."""

import os
import uuid

from spdk_common import naming

MACHINE_ID = '/etc/machine-id'


def resolve(conf, machine_id_file=MACHINE_ID):
    """The configured NQN, else host_nqn_file's, else one from machine-id.

    The machine-id form is stable across reboots and unique per host
    (nvme-cli derives host NQNs the same way when asked to).
    """
    if conf.host_nqn:
        return naming.validate_nqn(conf.host_nqn)
    if conf.host_nqn_file and os.path.exists(conf.host_nqn_file):
        with open(conf.host_nqn_file) as f:
            return naming.validate_nqn(f.read().strip())
    with open(machine_id_file) as f:
        machine = uuid.UUID(f.read().strip())
    return naming.validate_nqn(
        'nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid5(machine,
                                                          'nvme-hostnqn'))
