"""Cinder QoS specs to SPDK ``bdev_set_qos_limit`` parameters."""

import math

from oslo_utils import units

from cinder import exception
from cinder.i18n import _
from cinder.volume import volume_types

# Cinder spec key -> (SPDK parameter, divisor, SPDK granularity)
_SPEC_TO_SPDK = {
    'total_iops_sec': ('rw_ios_per_sec', 1, 1000),
    'total_bytes_sec': ('rw_mbytes_per_sec', units.Mi, 1),
    'read_bytes_sec': ('r_mbytes_per_sec', units.Mi, 1),
    'write_bytes_sec': ('w_mbytes_per_sec', units.Mi, 1),
}


def limits_from_specs(specs):
    """Translate QoS spec keys; refuse keys SPDK cannot enforce.

    SPDK limits in whole thousands of IOPS and whole MiB/s; values are
    rounded up to that granularity (as SPDK itself would).
    """
    unsupported = sorted(set(specs) - set(_SPEC_TO_SPDK))
    if unsupported:
        raise exception.InvalidInput(reason=_(
            'QoS keys %(bad)s are not supported by the SPDK back end; it '
            'enforces %(good)s') % {'bad': ', '.join(unsupported),
                                    'good': ', '.join(sorted(_SPEC_TO_SPDK))})
    limits = {}
    for key, value in specs.items():
        spdk, divisor, granularity = _SPEC_TO_SPDK[key]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise exception.InvalidInput(
                reason=_('QoS %(key)s=%(value)r is not an integer') %
                {'key': key, 'value': value})
        if number < 0:
            raise exception.InvalidInput(
                reason=_('QoS %(key)s=%(value)r is negative') %
                {'key': key, 'value': value})
        scaled = math.ceil(number / divisor)
        limits[spdk] = int(math.ceil(scaled / granularity) * granularity)
    return limits


def limits_for_type(volume_type_id):
    """Back-end limits of a volume type, or None when it has none."""
    if not volume_type_id:
        return None
    qos = volume_types.get_volume_type_qos_specs(volume_type_id)['qos_specs']
    if not qos or qos.get('consumer') == 'front-end':
        return None
    specs = dict(qos.get('specs') or {})
    return limits_from_specs(specs) or None
