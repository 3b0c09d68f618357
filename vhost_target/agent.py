"""The agent's operations, behind its RPC API and its replay.

Every call is idempotent and takes one lock per volume, so concurrent and
repeated calls for one volume serialize and different volumes proceed in
parallel.
"""

import collections

from oslo_concurrency import lockutils
from oslo_log import log as logging

from spdk_common import exception as spdk_exc
from spdk_common import naming
from vhost_target import planner
from vhost_target import state as agent_state

LOG = logging.getLogger(__name__)

AGENT_VERSION = '1.0'
# Version of the notification payloads; bumped when a field changes.
NOTIFICATION_VERSION = '1.0'


class InvalidAttachRequest(spdk_exc.SPDKException):
    message = 'Invalid attach request for volume %(volume)s: %(reason)s'


class UnknownVolume(spdk_exc.SPDKException):
    message = 'Volume %(volume)s is not attached on this host.'


def _lock(volume_id):
    return lockutils.lock('spdk-vhost-%s' % volume_id)


def parse_connection_info(volume_id, connection_info):
    """Validate Cinder's spdk_vhost connection_info; return its parts."""
    if not isinstance(connection_info, dict):
        raise InvalidAttachRequest(volume=volume_id,
                                   reason='connection_info is not a dict')
    kind = connection_info.get('driver_volume_type')
    if kind != 'spdk_vhost':
        raise InvalidAttachRequest(
            volume=volume_id,
            reason='driver_volume_type is %r, not spdk_vhost' % kind)
    data = connection_info.get('data')
    if not isinstance(data, dict):
        raise InvalidAttachRequest(volume=volume_id,
                                   reason='connection_info has no data')
    for field in ('target_nqn', 'host_nqn'):
        try:
            naming.validate_nqn(data.get(field))
        except spdk_exc.InvalidNQN as exc:
            raise InvalidAttachRequest(volume=volume_id,
                                       reason='%s: %s' % (field, exc))
    portals = data.get('portals')
    valid = isinstance(portals, (list, tuple)) and portals and all(
        isinstance(p, (list, tuple)) and len(p) == 3 and str(p[1]).isdigit()
        and str(p[2]).lower() == 'tcp' for p in portals)
    if not valid:
        raise InvalidAttachRequest(
            volume=volume_id,
            reason='portals must be a list of (address, port, "tcp"), not '
                   '%r' % (portals,))
    return (data['target_nqn'], [tuple(map(str, p)) for p in portals],
            data['host_nqn'], data.get('dhchap_secret'))


class VhostAgent:
    def __init__(self, vhost, desired, plan, topology, notifier=None,
                 host_nqn=None):
        self._vhost = vhost
        self._host_nqn = host_nqn
        self._desired = desired
        self._plan = plan
        self._topology = topology
        self._notifier = notifier

    def _notify(self, event, payload, error=False):
        if self._notifier is None:
            return
        payload = dict(payload, version=NOTIFICATION_VERSION)
        send = self._notifier.error if error else self._notifier.info
        send({}, 'spdk_vhost_target.%s' % event, payload)

    def _load_by_cpu(self):
        return collections.Counter(a.cpu for a in self._desired.all())

    def attach_volume(self, volume_id, connection_info, numa_nodes=None,
                      qos=None):
        target_nqn, portals, host_nqn, secret = parse_connection_info(
            volume_id, connection_info)
        numa_nodes = sorted(set(numa_nodes or []))
        unknown = [n for n in numa_nodes if n not in self._topology.nodes]
        if unknown:
            raise InvalidAttachRequest(
                volume=volume_id,
                reason='NUMA node(s) %s do not exist on this host (it has '
                       '%s)' % (unknown, sorted(self._topology.nodes)))
        with _lock(volume_id):
            existing = self._desired.get(volume_id)
            if existing is not None:
                cpu = existing.cpu
            else:
                cpu, fallback = planner.least_loaded_core(
                    self._plan, numa_nodes, self._load_by_cpu())
                if fallback:
                    LOG.warning('No SPDK reactor on NUMA node(s) %(nodes)s; '
                                'volume %(id)s is served from CPU %(cpu)d',
                                {'nodes': numa_nodes, 'id': volume_id,
                                 'cpu': cpu})
            attachment = agent_state.Attachment(
                volume_id=volume_id, target_nqn=target_nqn, portals=portals,
                host_nqn=host_nqn, cpu=cpu, numa_nodes=numa_nodes,
                dhchap_secret=secret, qos=qos)
            try:
                path = self._vhost.attach(attachment)
            except spdk_exc.SPDKException as exc:
                self._notify('attach.error', {'volume_id': volume_id,
                                              'reason': str(exc)},
                             error=True)
                raise
            self._desired.put(attachment)
        LOG.info('Volume %(id)s attached at %(path)s on CPU %(cpu)d',
                 {'id': volume_id, 'path': path, 'cpu': cpu})
        self._notify('attach.end', {'volume_id': volume_id,
                                    'socket': path, 'cpu': cpu})
        return path

    def detach_volume(self, volume_id):
        with _lock(volume_id):
            self._vhost.detach(volume_id)
            self._desired.remove(volume_id)
        LOG.info('Volume %s detached', volume_id)
        self._notify('detach.end', {'volume_id': volume_id})

    def extend_volume(self, volume_id):
        """The size the compute node sees now, in bytes.

        The storage side grows the lvol; SPDK's NVMe initiator learns the
        new size from the namespace-change notice and vhost-blk passes it to
        the guest.
        """
        self._require(volume_id)
        return self._vhost.size_bytes(volume_id)

    def set_qos(self, volume_id, qos):
        with _lock(volume_id):
            attachment = self._require(volume_id)
            self._vhost.set_qos(volume_id, qos or {})
            attachment.qos = qos
            self._desired.put(attachment)

    def _require(self, volume_id):
        attachment = self._desired.get(volume_id)
        if attachment is None:
            raise UnknownVolume(volume=volume_id)
        return attachment

    def get_status(self):
        present = self._vhost.controllers()
        return {
            'version': AGENT_VERSION,
            # The NQN this host's SPDK connects with, for the storage
            # side's ACL.
            'host_nqn': self._host_nqn,
            'reactor_cpus': self._plan.reactor_cpus,
            'cpumask': self._plan.cpumask,
            'attachments': [
                {'volume_id': a.volume_id, 'cpu': a.cpu,
                 'numa_nodes': a.numa_nodes,
                 'socket': self._vhost.socket_path(a.volume_id),
                 'target_nqn': a.target_nqn}
                for a in self._desired.all()],
            'spdk': {'vhost_controllers': len(present['vhost']),
                     'nvme_controllers': len(present['nvme'])},
        }

    def replay(self):
        """Re-create every desired attachment in a (re)started SPDK."""
        restored, failed = [], []
        for attachment in self._desired.all():
            with _lock(attachment.volume_id):
                try:
                    self._vhost.attach(attachment)
                    restored.append(attachment.volume_id)
                except spdk_exc.SPDKException as exc:
                    failed.append(attachment.volume_id)
                    LOG.error('Could not restore volume %(id)s: %(err)s',
                              {'id': attachment.volume_id, 'err': exc})
        LOG.warning('Replayed %(n)d attachment(s) into SPDK; %(f)d failed',
                    {'n': len(restored), 'f': len(failed)})
        self._notify('recovery.end', {'restored': restored,
                                      'failed': failed}, error=bool(failed))
        return restored, failed
