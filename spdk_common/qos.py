"""Cinder QoS specs and SPDK's ``bdev_set_qos_limit`` parameters.

Shared by the storage side (back-end specs, on the lvol) and the compute
side (front-end specs, on the NVMe bdev that serves vhost-user: libvirt's
iotune does not reach vhost-user disks).
"""

import math

from spdk_common import exception

MIB = 1024 * 1024

# Cinder spec key -> (SPDK parameter, divisor, SPDK granularity)
SPEC_TO_SPDK = {
    'total_iops_sec': ('rw_ios_per_sec', 1, 1000),
    'total_bytes_sec': ('rw_mbytes_per_sec', MIB, 1),
    'read_bytes_sec': ('r_mbytes_per_sec', MIB, 1),
    'write_bytes_sec': ('w_mbytes_per_sec', MIB, 1),
}


class InvalidQoS(exception.SPDKException):
    message = '%(reason)s'


def limits_from_specs(specs):
    """Translate QoS spec keys; refuse keys SPDK cannot enforce.

    SPDK limits in whole thousands of IOPS and whole MiB/s; values are
    rounded up to that granularity (as SPDK itself would).
    """
    unsupported = sorted(set(specs) - set(SPEC_TO_SPDK))
    if unsupported:
        raise InvalidQoS(reason='QoS keys %s are not supported by SPDK; it '
                         'enforces %s' % (', '.join(unsupported),
                                          ', '.join(sorted(SPEC_TO_SPDK))))
    limits = {}
    for key, value in specs.items():
        spdk, divisor, granularity = SPEC_TO_SPDK[key]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidQoS(reason='QoS %s=%r is not an integer'
                             % (key, value))
        if number < 0:
            raise InvalidQoS(reason='QoS %s=%r is negative' % (key, value))
        scaled = math.ceil(number / divisor)
        limits[spdk] = int(math.ceil(scaled / granularity) * granularity)
    return limits


LIMIT_KEYS = ('rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec',
              'w_mbytes_per_sec')


def full_limits(limits, bdev):
    """Parameters that set ``limits`` and lift every other limit (0)."""
    params = dict.fromkeys(LIMIT_KEYS, 0)
    params.update(limits or {})
    params['name'] = bdev
    return params
