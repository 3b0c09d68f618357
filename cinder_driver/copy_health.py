"""What Cinder shows of a replicated volume's copies.

The compute host that mirrors a volume's copies knows which are in sync;
its agent notifies when one goes out of the mirror, is rebuilt, and when
every copy is in sync again (:mod:`spdk_common.notifications`). A back end
of storage nodes listens and records it on the volume:

* ``replication_status``: ``enabled`` (every copy in sync), ``error`` (a
  copy is out of the mirror: the volume runs degraded), ``enabling`` (a
  copy is being rebuilt);
* the volume's ``spdk_copies`` metadata: each copy's node and state, e.g.
  ``store1=in_sync store2=missing``.
"""

from oslo_log import log as logging
from oslo_utils import uuidutils

from cinder import context
from cinder import exception
from cinder import objects
from cinder.objects import fields
from cinder.volume import volume_utils

from cinder_driver import nodes as nodes_mod
from spdk_common import notifications

LOG = logging.getLogger(__name__)

METADATA_KEY = 'spdk_copies'
STATUS_OF_EVENT = {
    notifications.DEGRADED: fields.ReplicationStatus.ERROR,
    notifications.REBUILDING: fields.ReplicationStatus.ENABLING,
    notifications.MIRRORED: fields.ReplicationStatus.ENABLED,
}


def listener_pool(backend_host):
    """The back end's pool of listeners: RabbitMQ names the queue after
    it, so it must not be a name Cinder's own RPC servers use (their
    ``cinder-volume.<host>`` queue would then take the notifications, and
    this listener Cinder's casts).
    """
    return 'spdk-copy-health.%s' % backend_host


def summary(names, copies):
    """``node=state`` of each copy, in the mirror's order."""
    states = {c.get('index'): c.get('state') for c in copies
              if isinstance(c, dict)}
    return ' '.join('%s=%s' % (name, states.get(index, 'unknown'))
                    for index, name in enumerate(names))


def recorded(volume):
    """{node: state} of the volume's ``spdk_copies`` metadata, in its
    order; empty when nothing was recorded (never degraded).
    """
    text = (volume.metadata or {}).get(METADATA_KEY, '')
    return dict(item.split('=', 1) for item in text.split() if '=' in item)


def record(volume, states):
    """Set the volume's ``spdk_copies`` from {node: state} (in order)."""
    volume.metadata = with_states(volume.metadata, states)


def with_states(metadata, states):
    """Volume metadata with ``spdk_copies`` from {node: state}."""
    return dict(metadata or {}, **{
        METADATA_KEY: ' '.join('%s=%s' % item for item in states.items())})


class CopyHealthEndpoint:
    """Takes the agents' mirror notifications for one back end."""

    def __init__(self, backend_host):
        self._backend = backend_host

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        event = notifications.event_of(event_type)
        if event not in STATUS_OF_EVENT or not isinstance(payload, dict):
            return
        volume_id = payload.get('volume_id')
        if not uuidutils.is_uuid_like(volume_id):
            LOG.warning('Ignoring %(event)s from %(publisher)s: volume_id '
                        '%(id)r is not a volume id',
                        {'event': event_type, 'publisher': publisher_id,
                         'id': volume_id})
            return
        admin = context.get_admin_context()
        try:
            volume = objects.Volume.get_by_id(admin, volume_id)
        except exception.VolumeNotFound:
            return
        if volume_utils.extract_host(volume.host, 'backend') != self._backend:
            return   # another back end's
        names = nodes_mod.placement(volume) or []
        copies = payload.get('copies')
        volume.replication_status = STATUS_OF_EVENT[event]
        if isinstance(copies, list) and names:
            volume.metadata = dict(volume.metadata or {}, **{
                METADATA_KEY: summary(names, copies)})
        volume.save()
        log = LOG.warning if event == notifications.DEGRADED else LOG.info
        log('Volume %(id)s: %(event)s on %(publisher)s (%(copies)s)',
            {'id': volume_id, 'event': event, 'publisher': publisher_id,
             'copies': summary(names, copies or [])})

    error = info
