"""SPDK's ``bdev_set_qos_limit`` parameters, shared by storage and compute."""

LIMIT_KEYS = ('rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec',
              'w_mbytes_per_sec')


def full_limits(limits, bdev):
    """Parameters that set ``limits`` and lift every other limit (0)."""
    params = dict.fromkeys(LIMIT_KEYS, 0)
    params.update(limits or {})
    params['name'] = bdev
    return params
