"""The agent's operations, behind its RPC API and its replay.

Every call is idempotent and takes one lock per volume, so concurrent and
repeated calls for one volume serialize and different volumes proceed in
parallel.
"""

import collections
import concurrent.futures
import dataclasses
import time

from oslo_concurrency import lockutils
from oslo_log import log as logging

from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import notifications
from vhost_target import mirror
from vhost_target import planner
from vhost_target import state as agent_state
from vhost_target import validation
from vhost_target import vhost as vhost_mod

LOG = logging.getLogger(__name__)

AGENT_VERSION = '1.0'
# Attachments restored at once by a reconcile, and how often (seconds) a
# long one logs its progress.
RECONCILE_WORKERS = 32
PROGRESS_EVERY = 1.0


def _lock(volume_id):
    return lockutils.lock('spdk-vhost-%s' % volume_id)


def checked(method, check, *args):
    """``check(*args)``, its validation.Invalid turned into the RPC error."""
    try:
        return check(*args)
    except validation.Invalid as exc:
        raise spdk_exc.InvalidRequest(method=method, field=exc.field,
                                      value=exc.value, reason=exc.reason)


def refuse_unknown_arguments(method, arguments):
    """Arguments the API version does not define are an error, not ignored.

    Only the names and types are shown: an unexpected argument may carry a
    secret.
    """
    if arguments:
        name = sorted(arguments, key=str)[0]
        raise spdk_exc.InvalidRequest(
            method=method, field='argument %s' % spdk_exc.shown(name),
            value='(a %s)' % type(arguments[name]).__name__,
            reason='is not an argument of %s' % method)


# What a repeated attach of one volume may not change without a detach:
# the NVMe connection already serving the guest.
_CONNECTION_FIELDS = (('target_nqn', 'connection_info.data.target_nqn'),
                      ('portals', 'connection_info.data.portals'),
                      ('replicas', 'connection_info.data.volume_replicas'),
                      ('host_nqn', 'connection_info.data.host_nqn'),
                      ('dhchap_secret', 'connection_info.data.dhchap_secret'))


def _normalized_portals(portals):
    if portals is None:
        return None
    try:
        return connection.portals(portals)
    except validation.Invalid:
        return list(portals)


def _normalized(attr, value):
    """A recorded connection field as the validation hands it over."""
    if attr == 'portals':
        return _normalized_portals(value)
    if attr == 'replicas' and value is not None:
        return [(nqn, _normalized_portals(portals))
                for nqn, portals in value]
    return value


def _copies(attachment):
    return len(attachment.replicas or ())


class VhostAgent:
    def __init__(self, vhost, desired, plan, topology, notifier=None,
                 host_nqn=None):
        self._vhost = vhost
        self._host_nqn = host_nqn
        self._desired = desired
        self._plan = plan
        self._topology = topology
        self._notifier = notifier
        # What the last reconcile could not fix, for get_status.
        self.problems = []
        # Attachments whose chain does not serve I/O now, by volume id:
        # {'state': 'disconnected' | 'stalled' | 'lost', 'since':
        # monotonic time, 'nvme_state': SPDK's word, 'reason': text}.
        # Written by check_health and attach_volume.
        self._health = {}
        # Rebuilds the current health check may still start.
        self._rebuild_slots = 0
        self._unreachable = set()
        self._clock = time.monotonic

    def _notify(self, event, payload, error=False):
        if self._notifier is None:
            return
        payload = dict(payload, version=notifications.VERSION)
        send = self._notifier.error if error else self._notifier.info
        send({}, notifications.event_type(event), payload)

    def _load_by_cpu(self):
        return collections.Counter(a.cpu for a in self._desired.all())

    def attach_volume(self, volume_id, connection_info, numa_nodes=None,
                      qos=None):
        request = checked('attach_volume', validation.attach, volume_id,
                          connection_info, numa_nodes, qos)
        volume_id, numa_nodes = request.volume_id, request.numa_nodes
        unknown = [n for n in numa_nodes if n not in self._topology.nodes]
        if unknown:
            raise spdk_exc.InvalidRequest(
                method='attach_volume', field='numa_nodes',
                value=spdk_exc.shown(unknown),
                reason='names NUMA node(s) this host does not have (it has '
                       '%s)' % sorted(self._topology.nodes))
        with _lock(volume_id):
            existing = self._desired.get(volume_id)
            if existing is not None:
                self._check_same_connection(existing, request)
                cpu = existing.cpu
                if existing.numa_nodes != numa_nodes:
                    # Moving a served controller would cut the guest off;
                    # the state keeps the nodes its CPU was chosen for.
                    LOG.warning('Volume %(id)s stays on CPU %(cpu)d, chosen '
                                'for NUMA node(s) %(old)s, not %(new)s; '
                                'detach and attach it to move it',
                                {'id': volume_id, 'cpu': cpu,
                                 'old': existing.numa_nodes,
                                 'new': numa_nodes})
                    numa_nodes = existing.numa_nodes
            else:
                self._check_own_host_nqn(request)
                self._check_room()
                cpu, fallback = planner.least_loaded_core(
                    self._plan, numa_nodes, self._load_by_cpu())
                if fallback:
                    LOG.warning('No SPDK reactor on NUMA node(s) %(nodes)s; '
                                'volume %(id)s is served from CPU %(cpu)d',
                                {'nodes': numa_nodes, 'id': volume_id,
                                 'cpu': cpu})
            attachment = agent_state.Attachment(
                volume_id=volume_id, target_nqn=request.target_nqn,
                portals=request.portals, host_nqn=request.host_nqn, cpu=cpu,
                numa_nodes=numa_nodes, dhchap_secret=request.dhchap_secret,
                qos=request.qos, replicas=request.replicas)
            try:
                path = self._vhost.attach(attachment)
                if existing is not None and existing.qos and not request.qos:
                    # attach() sets only limits it is given; lift the old.
                    self._vhost.set_qos(volume_id, {},
                                        attachment.replicas is not None)
            except spdk_exc.SPDKException as exc:
                self._notify('attach.error', {'volume_id': volume_id,
                                              'reason': str(exc)},
                             error=True)
                raise
            vhost_mod.crash_point('attach:before-state-write')
            self._desired.put(attachment)
            if self._health.get(volume_id, {}).get('state') == 'lost':
                # attach() rebuilt the whole chain.
                self._recovered(attachment, 'rebuilt by attach_volume')
        LOG.info('Volume %(id)s attached at %(path)s on CPU %(cpu)d',
                 {'id': volume_id, 'path': path, 'cpu': cpu})
        self._notify('attach.end', {'volume_id': volume_id,
                                    'socket': path, 'cpu': cpu})
        return path

    def _check_own_host_nqn(self, request):
        """A new attachment connects as this host and no other.

        Cinder puts the NQN this agent reports (get_status) on the
        volume's ACL; connecting as another host's NQN would bring that
        host's volumes to this one's guests. Attachments made before keep
        theirs (_check_same_connection).
        """
        if self._host_nqn and request.host_nqn != self._host_nqn:
            raise spdk_exc.InvalidRequest(
                method='attach_volume', field='connection_info.data.host_nqn',
                value=spdk_exc.shown(request.host_nqn),
                reason="is not this host's NQN %r, the one the agent "
                       "reports and connects as" % self._host_nqn)

    @staticmethod
    def _check_same_connection(existing, request):
        """A repeated attach (hard reboot, retry) must ask for the same
        connection: SPDK keeps serving the existing one, so taking other
        parameters would record a connection that does not exist.
        """
        for attr, field in _CONNECTION_FIELDS:
            old = _normalized(attr, getattr(existing, attr))
            new = getattr(request, attr)
            if old != new:
                secret = attr == 'dhchap_secret'
                raise spdk_exc.InvalidRequest(
                    method='attach_volume', field=field,
                    value=spdk_exc.shown(new, secret=secret),
                    reason='differs from the attachment of volume %s this '
                           'host serves now%s; detach the volume first' % (
                               existing.volume_id,
                               '' if secret else ' (%s)' % (
                                   spdk_exc.shown(old), )))

    def detach_volume(self, volume_id):
        # A volume this host does not know is fine (detach is idempotent),
        # but its id must still be one, since it names what is removed.
        volume_id = checked('detach_volume', validation.volume_id, volume_id)
        with _lock(volume_id):
            # The state changes only after SPDK did: a detach refused
            # (VolumeBusy) or cut short by a crash leaves the attachment
            # recorded, and the next start re-creates what is missing.
            existing = self._desired.get(volume_id)
            self._vhost.detach(volume_id,
                               _copies(existing) if existing else 0)
            vhost_mod.crash_point('detach:before-state-write')
            self._desired.remove(volume_id)
            # Attached again, its health is looked at (and told) afresh.
            self._health.pop(volume_id, None)
        LOG.info('Volume %s detached', volume_id)
        self._notify('detach.end', {'volume_id': volume_id})

    def extend_volume(self, volume_id):
        """The size the compute node sees now, in bytes.

        The storage side grows the lvol; SPDK's NVMe initiator learns the
        new size from the namespace-change notice and vhost-blk passes it to
        the guest.
        """
        volume_id = checked('extend_volume', validation.volume_id,
                            volume_id)
        attachment = self._require(volume_id)
        return self._vhost.size_bytes(volume_id,
                                      attachment.replicas is not None)

    def set_qos(self, volume_id, qos):
        volume_id = checked('set_qos', validation.volume_id, volume_id)
        qos = checked('set_qos', validation.qos, qos)
        with _lock(volume_id):
            attachment = self._require(volume_id)
            self._vhost.set_qos(volume_id, qos or {},
                                attachment.replicas is not None)
            attachment.qos = qos
            self._desired.put(attachment)

    def replace_copy(self, volume_id, connection_info):
        """Mirror a new copy of a replicated volume in place of one whose
        storage node is gone (the operator's re-replication).

        ``connection_info`` is the volume's connection as Cinder now gives
        it: the attachment's, but for one copy. The old copy leaves the
        mirror, the new one is connected and added, and SPDK rebuilds it
        from the others; the health check reports the rebuild and the
        mirror in sync, as after a copy came back. Repeating the call once
        done does nothing. Returns the index of the copy replaced (None
        when nothing changed).
        """
        request = checked('replace_copy', validation.attach, volume_id,
                          connection_info, None, None)
        volume_id = request.volume_id
        with _lock(volume_id):
            existing = self._require(volume_id)
            index = self._copy_to_replace(existing, request)
            if index is None:
                return None
            new = dataclasses.replace(existing, replicas=request.replicas)
            raid = self._vhost.mirror.get(naming.raid_bdev_name(volume_id))
            others = [m for i, m in enumerate(self._members(existing))
                      if i != index]
            states = mirror.copy_states(raid, others)
            if (raid is None or raid['state'] != mirror.ONLINE
                    or raid.get('process') or mirror.IN_SYNC not in
                    states.values()):
                raise spdk_exc.InvalidRequest(
                    method='replace_copy', field='volume_id',
                    value=volume_id,
                    reason='the mirror has no other copy in sync to rebuild '
                           'copy %d from, or a rebuild is running (%s); '
                           'try again once it is done' % (index, ', '.join(
                               '%s=%s' % kv for kv in sorted(states.items()))
                               or 'no mirror'))
            member = self._vhost.replace_copy(existing, new, index)
            vhost_mod.crash_point('replace:before-state-write')
            self._desired.put(new)
            # Otherwise the health check adds it when a rebuild ends.
            if self._free_rebuild_slots(self._vhost.mirror.listing()) > 0:
                try:
                    self._vhost.mirror.add(naming.raid_bdev_name(volume_id),
                                           member)
                except spdk_exc.SPDKException as exc:
                    # The health check adds it on its next look.
                    LOG.warning('Volume %(id)s: the mirror did not take the '
                                'new copy %(index)d yet: %(err)s',
                                {'id': volume_id, 'index': index,
                                 'err': exc})
        LOG.warning('Volume %(id)s: copy %(index)d is now %(target)s; the '
                    'mirror rebuilds it', {
                        'id': volume_id, 'index': index,
                        'target': request.replicas[index][0]})
        return index

    def _free_rebuild_slots(self, raids):
        """How many more rebuilds SPDK's memory holds, given every raid
        bdev (``Mirror.listing``).
        """
        return self._vhost_conf('max_concurrent_rebuilds') - sum(
            1 for raid in raids.values() if raid.get('process'))

    @staticmethod
    def _members(attachment):
        return [naming.namespace_bdev_name(name)
                for name, _nqn, _portals in attachment.targets()]

    @staticmethod
    def _copy_to_replace(existing, request):
        """The index of the one copy ``request`` changes; None when it
        changes none. Anything else that differs is refused.
        """
        def refuse(field, value, reason):
            raise spdk_exc.InvalidRequest(
                method='replace_copy', field=field,
                value=spdk_exc.shown(value, secret='dhchap' in field),
                reason=reason)
        if existing.replicas is None:
            refuse('volume_id', existing.volume_id,
                   'is a volume of one copy on this host: nothing to '
                   'replace')
        for attr, field in _CONNECTION_FIELDS:
            if attr != 'replicas' and _normalized(
                    attr, getattr(existing, attr)) != getattr(request, attr):
                refuse(field, getattr(request, attr),
                       'differs from the attachment this host serves; '
                       'only one copy may change')
        old = _normalized('replicas', existing.replicas)
        new = request.replicas or []
        if len(new) != len(old):
            refuse('connection_info.data.volume_replicas', len(new),
                   'copies: the attachment has %d; a replacement keeps '
                   'their number' % len(old))
        changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        if len(changed) > 1:
            refuse('connection_info.data.volume_replicas', changed,
                   'copies changed; one is replaced at a time')
        return changed[0] if changed else None

    def _check_room(self):
        attached = len(self._desired.all())
        if attached >= self._plan.attachment_capacity:
            raise spdk_exc.NoRoom(
                limit=self._plan.attachment_capacity, attached=attached,
                memory=max(self._plan.memory_mib_by_node.values(),
                           default=0))

    def _require(self, volume_id):
        attachment = self._desired.get(volume_id)
        if attachment is None:
            raise spdk_exc.UnknownVolume(volume=volume_id)
        return attachment

    # -- controller loss and stalls -------------------------------------

    @staticmethod
    def _target(attachment):
        return '; '.join('%s at %s' % (nqn, ', '.join(
            '%s:%s' % (p[0], p[1]) for p in portals))
            for _name, nqn, portals in attachment.targets())

    def _health_payload(self, attachment, record):
        payload = {'volume_id': attachment.volume_id,
                   'target_nqn': attachment.target_nqn,
                   'portals': [list(p) for p in attachment.portals or ()],
                   'nvme_state': record.get('nvme_state'),
                   'seconds': round(self._clock() - record['since'], 1),
                   'reason': record['reason']}
        if attachment.replicas is not None:
            payload['copies'] = record.get('copies') or []
            payload['rebuild_percent'] = record.get('rebuild_percent')
        return payload

    def _recovered(self, attachment, how):
        record = self._health.pop(attachment.volume_id, None)
        if record is None or record['state'] == 'disconnected':
            return   # nothing was reported
        LOG.warning('Volume %(id)s serves I/O again from %(target)s '
                    '(%(how)s after %(secs).0fs %(state)s)',
                    {'id': attachment.volume_id,
                     'target': self._target(attachment), 'how': how,
                     'secs': self._clock() - record['since'],
                     'state': record['state']})
        payload = self._health_payload(attachment, record)
        payload.update(reason=how, previous_state=record['state'],
                       nvme_state=vhost_mod.NVME_CONNECTED)
        self._notify('attachment.recovered', payload)

    def check_health(self):
        """Look at every attachment's NVMe controller (one listing call)
        and act on what changed; the supervisor calls it every
        ``health_check_interval_sec``.

        A controller SPDK deleted (ctrlr_loss_timeout_sec ran out) left
        the vhost controller with no bdev: the attachment is marked lost,
        notified, and its chain rebuilt now and on every later look until
        the target answers; the guest's vhost-user session is ended then,
        so that QEMU reconnects to the rebuilt controller. One
        disconnected (SPDK reconnecting) for longer than
        ``stall_report_after_sec`` is reported stalled; both report their
        recovery.
        """
        states = self._vhost.nvme_states()
        attachments = self._desired.all()
        raids = (self._vhost.mirror.listing()
                 if any(a.replicas for a in attachments) else {})
        # Rebuilds this look may start: SPDK's memory holds only so many.
        self._rebuild_slots = self._free_rebuild_slots(raids)
        # Portals a copy's reconnect failed on in this look: each such try
        # may wait target_answer_timeout_sec, and a node cut off the
        # network holds copies of many volumes; one try per look will do.
        self._unreachable = set()
        now = self._clock()
        for attachment in attachments:
            volume_id = attachment.volume_id
            if attachment.replicas is not None:
                self._check_mirror(attachment, raids.get(
                    naming.raid_bdev_name(volume_id)), states, now)
                continue
            nvme_state = states.get(naming.nvme_controller_name(volume_id))
            record = self._health.get(volume_id)
            if nvme_state == vhost_mod.NVME_CONNECTED:
                if record is not None and record['state'] != 'lost':
                    self._recovered(attachment, 'reconnected')
                continue
            if nvme_state is None:
                self._lost(attachment, record, now)
                continue
            if record is None:
                record = self._health[volume_id] = {
                    'state': 'disconnected', 'since': now,
                    'nvme_state': nvme_state,
                    'reason': 'SPDK is reconnecting to the storage target'}
            record['nvme_state'] = nvme_state
            if (record['state'] == 'disconnected'
                    and now - record['since']
                    >= self._vhost_conf('stall_report_after_sec')):
                record['state'] = 'stalled'
                LOG.error('Volume %(id)s is stalled: the storage target '
                          '%(target)s has not answered for %(secs).0fs '
                          '(SPDK controller state %(state)s); guest I/O '
                          'waits while SPDK keeps reconnecting',
                          {'id': volume_id,
                           'target': self._target(attachment),
                           'secs': now - record['since'],
                           'state': nvme_state})
                self._notify('attachment.stalled',
                             self._health_payload(attachment, record),
                             error=True)

    # -- replicated volumes: copies out of the mirror -----------------------

    def _check_mirror(self, attachment, raid, states, now):
        """A replicated volume's mirror: copies it took out are reported
        (degraded), put back as soon as their storage node answers, and
        their rebuild followed until every copy is in sync again.

        With no online mirror no I/O is served: as a single copy's lost
        controller, the chain is rebuilt until the copies answer.
        """
        volume_id = attachment.volume_id
        record = self._health.get(volume_id)
        if raid is None or raid['state'] != mirror.ONLINE:
            self._lost(attachment, record, now)
            return
        targets = attachment.targets()
        self._drop_failed_copies(attachment, targets, states)
        members = [naming.namespace_bdev_name(name)
                   for name, _nqn, _portals in targets]
        copies = mirror.copy_states(raid, members)
        if all(state == mirror.IN_SYNC for state in copies.values()):
            if record is not None:
                self._mirrored(attachment, record)
            return
        missing = [i for i, member in enumerate(members)
                   if copies[member] == mirror.MISSING]
        state = 'degraded' if missing else 'rebuilding'
        if record is None or record['state'] != state:
            record = self._health[volume_id] = {
                'state': state,
                'since': record['since'] if record else now,
                'reason': (
                    'copy %s out of the mirror: its storage node does not '
                    'answer; the guest goes on with the other copies'
                    % ', '.join(str(i) for i in missing) if missing else
                    'a copy that missed writes is being rebuilt')}
            self._note_copies(record, targets, members, copies, raid)
            if missing:
                LOG.error('Volume %(id)s is degraded: %(reason)s (%(target)s)',
                          {'id': volume_id, 'reason': record['reason'],
                           'target': self._target(attachment)})
            else:
                LOG.warning('Volume %(id)s: rebuilding copy %(copy)s',
                            {'id': volume_id,
                             'copy': (raid.get('process') or {}).get(
                                 'target')})
            self._notify('attachment.%s' % state,
                         self._health_payload(attachment, record),
                         error=bool(missing))
        self._note_copies(record, targets, members, copies, raid)
        if raid.get('process'):
            return
        if self._rebuild_slots <= 0:
            LOG.debug('Volume %(id)s: its copies wait for one of the '
                      '%(max)d rebuilds running to end',
                      {'id': volume_id,
                       'max': self._vhost_conf('max_concurrent_rebuilds')})
            return
        # One copy at a time: SPDK v25.09 rebuilds one copy per mirror, and
        # a second copy its examine re-adds during a rebuild is taken in
        # without one (seen on a 3-copy mirror: reads then returned bytes
        # neither copy was written with).
        for index in missing:
            if self._put_back(attachment, index, members[index], states,
                              record):
                self._rebuild_slots -= 1
                break

    def _drop_failed_copies(self, attachment, targets, states):
        """Detach the controllers SPDK stopped reconnecting (a copy's
        reconnect failed, with replica_ctrlr_loss_timeout_sec 0): the
        mirror takes out a copy it still counted (no I/O went to it since),
        and ``_put_back`` connects it again as one SPDK deleted.
        """
        for name, _nqn, _portals in targets:
            if states.get(name) != vhost_mod.NVME_FAILED:
                continue
            with _lock(attachment.volume_id):
                if self._desired.get(attachment.volume_id) is None:
                    return   # detached since the listing
                try:
                    self._vhost.disconnect(name)
                except spdk_exc.SPDKException as exc:
                    LOG.warning('Volume %(id)s: could not detach the failed '
                                'controller %(name)s: %(err)s',
                                {'id': attachment.volume_id, 'name': name,
                                 'err': exc})
                    continue
            del states[name]

    @staticmethod
    def _note_copies(record, targets, members, copies, raid):
        record['copies'] = [
            {'index': i, 'target_nqn': nqn, 'state': copies[member]}
            for i, ((_name, nqn, _portals), member) in enumerate(
                zip(targets, members))]
        record['rebuild_percent'] = mirror.rebuild_percent(raid)

    def _put_back(self, attachment, index, member, states, record):
        """Bring a copy that is out of the mirror back: connect its
        controller again if SPDK deleted it (the mirror re-adds it from
        its superblock), or add it when its controller answers again.
        Whether the copy is back.
        """
        volume_id = attachment.volume_id
        name, _nqn, portals = attachment.targets()[index]
        state = states.get(name)
        portals = tuple(map(tuple, portals))
        if state is None and portals in self._unreachable:
            return False
        with _lock(volume_id):
            if self._desired.get(volume_id) is None:
                return False   # detached since the listing
            try:
                if state is None:
                    try:
                        self._vhost.reconnect_copy(attachment, index)
                    except spdk_exc.SPDKException:
                        self._unreachable.add(portals)
                        raise
                elif state == vhost_mod.NVME_CONNECTED:
                    self._vhost.mirror.add(naming.raid_bdev_name(volume_id),
                                           member)
                else:
                    return False   # SPDK is reconnecting
            except spdk_exc.SPDKException as exc:
                reason = 'copy %d: %s' % (index, exc)
                # Retried on every look: logged when the cause changes.
                log = LOG.debug if reason == record.get('retry') else (
                    LOG.warning)
                record['retry'] = reason
                log('Volume %(id)s: copy %(index)d is not back yet: '
                    '%(err)s', {'id': volume_id, 'index': index,
                                'err': exc})
                return False
        LOG.warning('Volume %(id)s: copy %(index)d answers again; the '
                    'mirror takes it back and rebuilds it',
                    {'id': volume_id, 'index': index})
        return True

    def _mirrored(self, attachment, record):
        self._health.pop(attachment.volume_id, None)
        LOG.warning('Volume %(id)s: every copy is in sync again after '
                    '%(secs).0fs %(state)s',
                    {'id': attachment.volume_id,
                     'secs': self._clock() - record['since'],
                     'state': record['state']})
        record = dict(record, copies=[
            dict(c, state=mirror.IN_SYNC) for c in record.get('copies', ())],
            rebuild_percent=None)
        payload = self._health_payload(attachment, record)
        payload.update(previous_state=record['state'],
                       reason='every copy is in sync')
        self._notify(notifications.MIRRORED, payload)

    def _vhost_conf(self, name):
        return getattr(self._vhost.conf, name)

    def _lost(self, attachment, record, now):
        volume_id = attachment.volume_id
        if record is None or record['state'] != 'lost':
            since = record['since'] if record else now
            record = self._health[volume_id] = {
                'state': 'lost', 'since': since, 'nvme_state': None,
                'reason': 'SPDK deleted the NVMe controller '
                          '(ctrlr_loss_timeout_sec ran out); every guest '
                          'I/O fails until the chain is rebuilt'}
            LOG.error('Volume %(id)s lost its storage controller: SPDK '
                      'gave up on %(target)s and deleted the NVMe '
                      'controller; rebuilding the chain until the target '
                      'answers', {'id': volume_id,
                                  'target': self._target(attachment)})
            self._notify('attachment.lost',
                         self._health_payload(attachment, record),
                         error=True)
        with _lock(volume_id):
            # A detach may have run since the listing.
            if self._desired.get(volume_id) is None:
                self._health.pop(volume_id, None)
                return
            try:
                self._vhost.attach(attachment)
            except spdk_exc.SPDKException as exc:
                reason = 'rebuilding failed: %s' % exc
                # Retried on every look: logged when the cause changes,
                # not every health_check_interval_sec.
                log = LOG.debug if reason == record['reason'] else (
                    LOG.warning)
                record['reason'] = reason
                log('Volume %(id)s: rebuilding the chain to %(target)s '
                    'failed, retrying: %(err)s',
                    {'id': volume_id, 'target': self._target(attachment),
                     'err': exc})
                return
            self._recovered(attachment, 'chain rebuilt')

    def get_status(self):
        present = self._vhost.controllers()
        return {
            'version': AGENT_VERSION,
            # The NQN this host's SPDK connects with, for the storage
            # side's ACL.
            'host_nqn': self._host_nqn,
            # Where this host's vhost-user sockets are: a live migration
            # keeps each disk's socket path, so it must be the same on the
            # destination (checked there by the Nova hooks).
            'socket_dir': self._vhost.socket_dir,
            'reactor_cpus': self._plan.reactor_cpus,
            'cpumask': self._plan.cpumask,
            # How many attachments SPDK's hugepage memory holds.
            'attachment_capacity': self._plan.attachment_capacity,
            'attachments': [self._attachment_status(a)
                            for a in self._desired.all()],
            'spdk': {'vhost_controllers': len(present['vhost']),
                     'nvme_controllers': len(present['nvme'])},
            'problems': list(self.problems),
        }

    def _attachment_status(self, attachment):
        record = self._health.get(attachment.volume_id, {})
        status = {
            'volume_id': attachment.volume_id, 'cpu': attachment.cpu,
            'numa_nodes': attachment.numa_nodes,
            'socket': self._vhost.socket_path(attachment.volume_id),
            'target_nqn': attachment.target_nqn,
            # ok, disconnected (SPDK reconnecting), stalled (disconnected
            # past stall_report_after_sec) or lost (SPDK deleted the NVMe
            # controller; being rebuilt); for a replicated volume also
            # degraded (a copy out of the mirror) or rebuilding.
            'health': record.get('state', 'ok'),
            'health_reason': record.get('reason')}
        if attachment.replicas is not None:
            status['copies'] = record.get('copies') or [
                {'index': i, 'target_nqn': nqn, 'state': mirror.IN_SYNC}
                for i, (_name, nqn, _portals) in enumerate(
                    attachment.targets())]
            status['rebuild_percent'] = record.get('rebuild_percent')
        return status

    def reconcile(self):
        """Make SPDK match the desired state, both ways.

        Called when the agent starts (on an SPDK it started or took over)
        and after SPDK restarted. What is desired and missing is created
        (the replay); what SPDK or the socket and key directories hold
        under the agent's names (vhost-<uuid>, <uuid>, dhchap-<uuid>) for a
        volume that is not desired is removed: what an attach or detach
        left when the agent was killed in the middle. Nothing under other
        names is touched. What cannot be fixed is logged, kept in
        ``problems`` (get_status) and notified.
        """
        self._vhost.mirror.set_rebuild_bandwidth(
            self._vhost_conf('rebuild_max_bandwidth_mib_sec'))
        found = self._vhost.inventory()
        restored, failed, removed, problems = [], [], [], []
        wanted = self._desired.all()
        started = time.monotonic()
        last_report = started
        # Several at once: the RPC client pipelines them, so SPDK serves
        # a batch per RPC poll and the NVMe connects overlap.
        with concurrent.futures.ThreadPoolExecutor(RECONCILE_WORKERS) as pool:
            for volume_id, problem in pool.map(
                    lambda a: self._restore(a, found.get(a.volume_id)),
                    wanted):
                if problem is None:
                    restored.append(volume_id)
                else:
                    failed.append(volume_id)
                    problems.append(problem)
                if time.monotonic() - last_report >= PROGRESS_EVERY:
                    last_report = time.monotonic()
                    LOG.info('Reconcile: %(done)d of %(total)d attachments '
                             'looked at', {'done': len(restored) +
                                           len(failed),
                                           'total': len(wanted)})
        for volume_id in sorted(set(found) - {a.volume_id for a in
                                              self._desired.all()}):
            with _lock(volume_id):
                if self._desired.get(volume_id) is not None:
                    continue   # attached since the listing
                try:
                    self._vhost.detach(volume_id, self._vhost.copies_found(
                        found[volume_id]))
                    removed.append(volume_id)
                except (spdk_exc.SPDKException, OSError) as exc:
                    problems.append('volume %s is not attached here but '
                                    'SPDK still has it: %s'
                                    % (volume_id, exc))
        for problem in problems:
            LOG.error('Reconcile: %s', problem)
        self.problems = problems
        LOG.warning('Reconciled SPDK with the desired state: %(n)d '
                    'attachment(s) in place, %(f)d failed, %(r)d left-over '
                    'volume(s) removed', {'n': len(restored),
                                          'f': len(failed),
                                          'r': len(removed)})
        self._notify('recovery.end', {'restored': restored,
                                      'failed': failed, 'removed': removed,
                                      'problems': problems},
                     error=bool(problems))
        return restored, failed

    def _restore(self, attachment, objects):
        """Put one desired attachment in place: (volume id, problem or
        None).
        """
        volume_id = attachment.volume_id
        with _lock(volume_id):
            try:
                if objects and self._vhost.complete(attachment, objects):
                    # SPDK kept it (a take-over): only the socket's owner
                    # and mode are the agent's to check.
                    self._vhost.secure_socket(volume_id)
                else:
                    self._vhost.attach(attachment)
            except (spdk_exc.SPDKException, OSError) as exc:
                return volume_id, ('volume %s could not be restored: %s'
                                   % (volume_id, exc))
        return volume_id, None

    # The name the supervisor and the tests knew it by.
    replay = reconcile
