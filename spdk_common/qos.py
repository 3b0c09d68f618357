"""Cinder QoS specs and SPDK's ``bdev_set_qos_limit`` parameters.

Shared by the storage side (back-end specs, on the lvol) and the compute
side (front-end specs, on the NVMe bdev that serves vhost-user: libvirt's
iotune does not reach vhost-user disks).
"""

import errno
import os
import re

from spdk_common import exception

MIB = 1024 * 1024
UINT64_MAX = 2 ** 64 - 1

# Cinder spec key -> (SPDK parameter, divisor, SPDK granularity)
SPEC_TO_SPDK = {
    'total_iops_sec': ('rw_ios_per_sec', 1, 1000),
    'total_bytes_sec': ('rw_mbytes_per_sec', MIB, 1),
    'read_bytes_sec': ('r_mbytes_per_sec', MIB, 1),
    'write_bytes_sec': ('w_mbytes_per_sec', MIB, 1),
}

LIMIT_KEYS = ('rw_ios_per_sec', 'rw_mbytes_per_sec', 'r_mbytes_per_sec',
              'w_mbytes_per_sec')
# SPDK's steps (lib/bdev/bdev.c SPDK_BDEV_QOS_MIN_IOS_PER_SEC; bandwidth in
# whole MiB/s) and its largest values: UINT64_MAX itself means "leave
# unchanged" to bdev_set_qos_limit, bandwidth beyond
# SPDK_BDEV_QOS_MAX_MBYTES_PER_SEC is silently cut to it, and IOPS are
# rounded up to the step, which must not wrap.
LIMIT_STEP = {'rw_ios_per_sec': 1000, 'rw_mbytes_per_sec': 1,
              'r_mbytes_per_sec': 1, 'w_mbytes_per_sec': 1}
LIMIT_MAX = {'rw_ios_per_sec': UINT64_MAX // 1000 * 1000,
             'rw_mbytes_per_sec': UINT64_MAX // MIB,
             'r_mbytes_per_sec': UINT64_MAX // MIB,
             'w_mbytes_per_sec': UINT64_MAX // MIB}
# Cinder's spec values are strings; only plain decimal digits are numbers
# here (int() would also take '1_000', ' 12' or non-ASCII digits).
_DIGITS = re.compile(r'[0-9]+')


def _refuse(key, value, reason):
    raise exception.InvalidQoS(key=key, value=value, why=reason,
                               reason='QoS %s=%r %s' % (key, value, reason))


def _integer(key, value):
    """A non-negative whole number from an int or a decimal string.

    bool is an int subclass and a float truncates silently in int(): both
    are refused rather than turned into a limit nobody asked for.
    """
    if isinstance(value, bool):
        _refuse(key, value, 'is not an integer')
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, str) and value.strip().startswith('-'):
        _refuse(key, value, 'is negative')
    else:
        _refuse(key, value, 'is not an integer')
    if number < 0:
        _refuse(key, value, 'is negative')
    return number


def _unknown(keys, known):
    unsupported = sorted(map(str, set(keys) - set(known)))
    if unsupported:
        raise exception.InvalidQoS(
            reason='QoS keys %s are not supported by SPDK; it enforces %s'
            % (', '.join(unsupported), ', '.join(sorted(known))))


def limits_from_specs(specs):
    """Translate QoS spec keys; refuse keys SPDK cannot enforce.

    SPDK limits in whole thousands of IOPS and whole MiB/s; values are
    rounded up to that granularity (as SPDK itself would).
    """
    if not isinstance(specs, dict):
        raise exception.InvalidQoS(
            reason='QoS specs %r are not a dict' % (specs,))
    _unknown(specs, SPEC_TO_SPDK)
    limits = {}
    for key, value in specs.items():
        spdk, divisor, granularity = SPEC_TO_SPDK[key]
        number = _integer(key, value)
        # Integer ceilings: float division loses digits of large values.
        scaled = -(-number // divisor)
        limit = -(-scaled // granularity) * granularity
        if limit > LIMIT_MAX[spdk]:
            _refuse(key, value, 'is beyond what SPDK can enforce')
        limits[spdk] = limit
    return limits


def validate_limits(limits):
    """Check SPDK limits (``bdev_set_qos_limit`` keys) before SPDK does.

    SPDK's own answer to a bad key or value is "spdk_json_decode_object
    failed", naming neither; values must be whole steps, which SPDK
    would otherwise round up behind the caller's back.
    """
    if not isinstance(limits, dict):
        raise exception.InvalidQoS(
            reason='QoS limits %r are not a dict' % (limits,))
    _unknown(limits, LIMIT_KEYS)
    checked = {}
    for key, value in limits.items():
        if isinstance(value, str):
            # SPDK decodes JSON numbers only.
            _refuse(key, value, 'is not an integer')
        number = _integer(key, value)
        if number > LIMIT_MAX[key]:
            _refuse(key, value, 'is beyond what SPDK can enforce (at most '
                    '%d)' % LIMIT_MAX[key])
        if number % LIMIT_STEP[key]:
            _refuse(key, value, 'is not a multiple of %d, SPDK\'s step'
                    % LIMIT_STEP[key])
        checked[key] = number
    return checked


def change_refused(exc):
    """Whether SPDK refused ``bdev_set_qos_limit`` because the bdev's
    limits cannot change yet: it has limits and no I/O channel (nobody has
    used it since), so SPDK answers EAGAIN in a JSON-RPC error.
    """
    return (isinstance(exc, exception.SPDKRPCError) and exc.code == -32602
            and os.strerror(errno.EAGAIN) in (exc.error or ''))


def full_limits(limits, bdev):
    """Parameters that set ``limits`` and lift every other limit (0)."""
    params = dict.fromkeys(LIMIT_KEYS, 0)
    params.update(limits or {})
    params['name'] = bdev
    return params
