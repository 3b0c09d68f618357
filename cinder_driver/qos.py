"""Cinder QoS specs of a volume type to SPDK ``bdev_set_qos_limit``."""

from cinder import exception
from cinder.volume import volume_types

from spdk_common import exception as spdk_exc
from spdk_common import qos as spdk_qos


def limits_from_specs(specs):
    try:
        return spdk_qos.limits_from_specs(specs)
    except spdk_exc.InvalidQoS as exc:
        raise exception.InvalidInput(reason=str(exc))


def limits_for_type(volume_type_id):
    """Back-end limits of a volume type, or None when it has none."""
    if not volume_type_id:
        return None
    qos = volume_types.get_volume_type_qos_specs(volume_type_id)['qos_specs']
    if not qos or qos.get('consumer') == 'front-end':
        return None
    specs = dict(qos.get('specs') or {})
    return limits_from_specs(specs) or None
