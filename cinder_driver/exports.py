"""NVMe-oF/TCP exports of lvols: one subsystem per volume, one ACL per host.

SPDK keeps nothing of this across a restart, so the desired exports are
held here (filled from Cinder's database by ``ensure_export(s)`` at start
and kept current by attach and detach) and replayed when the target comes
back without them.

QoS limits travel with the export: SPDK (v25.09) accepts a change of a
bdev's limits only while the bdev has I/O channels, i.e. while something
(here: the namespace) has it open; on an lvol nobody has opened, the first
``bdev_set_qos_limit`` works and every later change fails with EAGAIN.
Limits are set once the namespace exists, changed only on exported
volumes, and replayed with the export.
"""

import concurrent.futures
import contextlib
import threading
import time

from oslo_concurrency import lockutils
from oslo_log import log as logging


from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import qos as spdk_qos

LOG = logging.getLogger(__name__)

TRANSPORT = 'TCP'
MODEL_NUMBER = 'OpenStack Cinder SPDK'
# Replay concurrency. SPDK's RPC server reads up to 32 KiB of requests per
# poll (every 4 ms) and answers the asynchronous export steps a poll or two
# later, so one export's four steps take ~30 ms whatever else is in flight:
# the replay rate is the number of exports in flight. Measured on 1000
# exports (2 cores): 8 workers 4.05 s, 32 1.06 s, 64 0.63 s, 128 0.46 s,
# 256 0.50 s.
REPLAY_WORKERS = 128
# A replay of thousands of exports logs its progress this often (seconds).
PROGRESS_EVERY = 1.0
# NQNs a replay names in its log line.
LOGGED_NQNS = 10


class _Export:
    __slots__ = ('volume_id', 'nqn', 'bdev', 'ns_uuid', 'hosts', 'qos')

    def __init__(self, volume_id, nqn, bdev, ns_uuid, qos_limits=None):
        self.volume_id = volume_id
        self.nqn = nqn
        self.bdev = bdev
        self.ns_uuid = ns_uuid
        self.qos = qos_limits
        # host NQN -> keyring key name (None without DH-HMAC-CHAP)
        self.hosts = {}


class NVMeoFExports:
    def __init__(self, client, nqn_prefix, addresses, port, keys=None,
                 node=None):
        """``node``: the storage node's name when its exports are copies
        of replicated volumes (each copy its own subsystem NQN and
        namespace UUID, see :func:`naming.replica_nqn`).
        """
        self._client = client
        self._node = node
        self._nqn_prefix = nqn_prefix
        self._addresses = list(addresses)
        self._port = str(port)
        self._keys = keys
        self._desired = {}
        self._desired_lock = threading.Lock()

    # -- naming and connection data -------------------------------------

    def nqn(self, volume_id):
        if self._node is not None:
            return naming.replica_nqn(self._nqn_prefix, volume_id,
                                      self._node)
        return naming.volume_nqn(self._nqn_prefix, volume_id)

    def namespace_uuid(self, volume_id):
        if self._node is not None:
            return naming.replica_namespace_uuid(volume_id, self._node)
        return volume_id

    def portals(self):
        return [(address, self._port, 'tcp') for address in self._addresses]

    def is_exported(self, volume_id):
        return volume_id in self._desired

    # -- transport ----------------------------------------------------------

    def transport_present(self):
        transports = self._client.call('nvmf_get_transports')
        return any(t.get('trtype', '').upper() == TRANSPORT
                   for t in transports)

    def ensure_transport(self):
        if self.transport_present():
            return
        try:
            self._client.call('nvmf_create_transport',
                              {'trtype': TRANSPORT})
        except spdk_exc.SPDKRPCError:
            # Another thread (an operation racing the replay) made it.
            if not self.transport_present():
                raise
            return
        LOG.info('Created the NVMe-oF %s transport', TRANSPORT)

    # -- exports ------------------------------------------------------------

    def export(self, volume_id, bdev, qos_limits=None):
        """Create the volume's subsystem, namespace, listeners and QoS."""
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired.get(volume_id)
            if export is None:
                export = _Export(volume_id, self.nqn(volume_id), bdev,
                                 self.namespace_uuid(volume_id))
            export.bdev = bdev
            export.qos = qos_limits
            self._create_subsystem(export)
            with self._desired_lock:
                self._desired[volume_id] = export
            return export.nqn

    def _create_subsystem(self, export):
        try:
            self._client.call('nvmf_create_subsystem', {
                'nqn': export.nqn,
                'serial_number': export.ns_uuid.replace('-', '')[:20],
                'model_number': MODEL_NUMBER,
                'allow_any_host': False,
                'max_namespaces': 1,
            })
        except spdk_exc.SPDKRPCError:
            current = self._subsystem(export.nqn)
            if current is None:
                raise
            # Already there (a retry, or a replay racing an attach): keep it
            # and add what it lacks.
            self._complete_subsystem(export, current)
            return
        try:
            self._complete_subsystem(export, {})
        except Exception:
            self._delete_subsystem(export.nqn)
            raise

    def _complete_subsystem(self, export, current):
        """Add the namespace, listeners, hosts and QoS ``current`` lacks."""
        if not current.get('namespaces'):
            self._client.call('nvmf_subsystem_add_ns', {
                'nqn': export.nqn, 'namespace': _namespace(export)})
        listening = _listening(current)
        for address, port, _transport in self.portals():
            if (address, port) not in listening:
                self._add_listener(export.nqn, address, port)
        allowed = _hosts(current)
        for host, key in export.hosts.items():
            if host not in allowed:
                self._add_host(export.nqn, host, key)
        for host in sorted(allowed - set(export.hosts)):
            # Detached while this target did not answer (forget_host).
            self._client.call('nvmf_subsystem_remove_host',
                              {'nqn': export.nqn, 'host': host})
        self._apply_qos(export)

    def _add_listener(self, nqn, address, port):
        self._client.call('nvmf_subsystem_add_listener', {
            'nqn': nqn,
            'listen_address': {'trtype': TRANSPORT,
                               'adrfam': naming.adrfam(address),
                               'traddr': address, 'trsvcid': port},
        })

    def _apply_qos(self, export):
        if export.qos:
            self._client.call('bdev_set_qos_limit',
                              spdk_qos.full_limits(export.qos, export.bdev))

    def set_qos(self, volume_id, qos_limits):
        """Change the limits of an exported volume now, or at its export."""
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired.get(volume_id)
            if export is None:
                return
            had_limits = bool(export.qos)
            export.qos = qos_limits
            if qos_limits:
                self._apply_qos(export)
            elif had_limits:
                self._client.call('bdev_set_qos_limit',
                                  spdk_qos.full_limits(None, export.bdev))

    def _subsystem(self, nqn):
        try:
            found = self._client.call('nvmf_get_subsystems', {'nqn': nqn})
        except spdk_exc.SPDKRPCError:
            return None
        return found[0] if found else None

    def unexport(self, volume_id):
        """Delete the volume's subsystem and forget its hosts and keys.

        Forgotten only once SPDK deleted it: an export that could not be
        deleted (the target does not answer) stays wanted, so that the
        replay sets its ACL as it is now when the target answers.
        """
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired.get(volume_id)
            nqn = export.nqn if export else self.nqn(volume_id)
            self._delete_subsystem(nqn)
            with self._desired_lock:
                self._desired.pop(volume_id, None)
            if export and self._keys:
                for host, key in export.hosts.items():
                    if key:
                        self._keys.remove(key)

    def _delete_subsystem(self, nqn):
        try:
            self._client.call('nvmf_delete_subsystem', {'nqn': nqn})
        except spdk_exc.SPDKRPCError:
            if self._subsystem(nqn) is not None:
                raise
            LOG.debug('Subsystem %s was already gone', nqn)

    def hosts(self, volume_id):
        export = self._desired.get(volume_id)
        return set(export.hosts) if export else set()

    # -- per-host ACL -------------------------------------------------------

    def allow_host(self, volume_id, host_nqn, authenticate=False):
        """Allow one host on the volume's subsystem.

        With ``authenticate`` the host gets a DH-HMAC-CHAP key, whose
        secret is returned (None otherwise).
        """
        naming.validate_nqn(host_nqn)
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired[volume_id]
            if host_nqn in export.hosts:
                key = export.hosts[host_nqn]
                return self._keys.secret(key) if key else None
            key = secret = None
            if authenticate and self._keys:
                key = naming.host_key_name(export.nqn, host_nqn)
                secret = dhchap.make_secret()
                self._keys.write(key, secret)
            try:
                self._add_host(export.nqn, host_nqn, key)
            except Exception:
                if key:
                    self._keys.remove(key)
                raise
            export.hosts[host_nqn] = key
            LOG.info('Host %(host)s may now connect to %(nqn)s',
                     {'host': host_nqn, 'nqn': export.nqn})
            return secret

    def _add_host(self, nqn, host_nqn, key):
        params = {'nqn': nqn, 'host': host_nqn}
        if key:
            self._keys.load(key)
            params['dhchap_key'] = key
        try:
            self._client.call('nvmf_subsystem_add_host', params)
        except spdk_exc.SPDKRPCError:
            # A host already on the list gets SPDK's generic internal error.
            if host_nqn not in _hosts(self._subsystem(nqn)):
                raise

    def disallow_host(self, volume_id, host_nqn):
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired.get(volume_id)
            if export is None or host_nqn not in export.hosts:
                return
            try:
                self._client.call('nvmf_subsystem_remove_host',
                                  {'nqn': export.nqn, 'host': host_nqn})
            except spdk_exc.SPDKRPCError:
                if host_nqn in _hosts(self._subsystem(export.nqn)):
                    raise
            key = export.hosts.pop(host_nqn)
            if key:
                self._keys.remove(key)
            LOG.info('Host %(host)s may no longer connect to %(nqn)s',
                     {'host': host_nqn, 'nqn': export.nqn})

    def forget(self, volume_id):
        """Stop wanting the volume's export here without asking SPDK (the
        target does not answer): a replay no longer restores it.
        """
        with lockutils.lock('spdk-export-%s' % volume_id):
            with self._desired_lock:
                export = self._desired.pop(volume_id, None)
            if export and self._keys:
                for key in filter(None, export.hosts.values()):
                    self._keys.remove(key)

    def forget_host(self, volume_id, host_nqn):
        """Take a host off the volume's ACL while this target does not
        answer: the next replay (requested by the caller) removes it from
        SPDK's ACL too, whether the target restarted or was only cut off.
        """
        with lockutils.lock('spdk-export-%s' % volume_id):
            export = self._desired.get(volume_id)
            if export is None or host_nqn not in export.hosts:
                return
            key = export.hosts.pop(host_nqn)
            if key:
                self._keys.remove(key)
            LOG.warning('Host %(host)s is off the ACL of %(nqn)s from the '
                        'next time its target answers',
                        {'host': host_nqn, 'nqn': export.nqn})

    def allow_host_later(self, volume_id, bdev, host_nqn, qos_limits=None):
        """Put a host on the volume's ACL while this target does not
        answer: the next replay (requested by the caller) exports the
        volume if it is not, and lets the host in, whether the target
        restarted or was only cut off. No DH-HMAC-CHAP key: storage nodes
        have none.
        """
        naming.validate_nqn(host_nqn)
        with lockutils.lock('spdk-export-%s' % volume_id):
            with self._desired_lock:
                export = self._desired.setdefault(volume_id, _Export(
                    volume_id, self.nqn(volume_id), bdev,
                    self.namespace_uuid(volume_id), qos_limits))
            if host_nqn in export.hosts:
                return
            export.hosts[host_nqn] = None
            LOG.warning('Host %(host)s is on the ACL of %(nqn)s from the '
                        'next time its target answers',
                        {'host': host_nqn, 'nqn': export.nqn})

    # -- temporary exports ------------------------------------------------

    @contextlib.contextmanager
    def temporary_export(self, name, bdev, host_nqn):
        """Export ``bdev`` to one host for the duration of a ``with``.

        The subsystem ``<prefix>:<name>`` gets the bdev as its only
        namespace, a listener on the first target address and ``host_nqn``
        alone on its ACL (never allow_any_host). It is deleted on leaving,
        whatever happened; yields (subsystem NQN, address, port). A
        subsystem of that name left by a crashed earlier run is replaced.
        """
        nqn = naming.validate_nqn('%s:%s' % (self._nqn_prefix, name))
        naming.validate_nqn(host_nqn)
        address, port, _transport = self.portals()[0]
        self.ensure_transport()
        params = {'nqn': nqn, 'allow_any_host': False, 'max_namespaces': 1,
                  'model_number': MODEL_NUMBER}
        try:
            self._client.call('nvmf_create_subsystem', params)
        except spdk_exc.SPDKRPCError:
            if self._subsystem(nqn) is None:
                raise
            LOG.warning('Replacing the leftover temporary export %s', nqn)
            self._delete_subsystem(nqn)
            self._client.call('nvmf_create_subsystem', params)
        failed = True
        try:
            self._client.call('nvmf_subsystem_add_ns', {
                'nqn': nqn, 'namespace': {'bdev_name': bdev}})
            self._add_listener(nqn, address, port)
            self._client.call('nvmf_subsystem_add_host',
                              {'nqn': nqn, 'host': host_nqn})
            yield nqn, address, port
            failed = False
        finally:
            try:
                self._delete_subsystem(nqn)
            except spdk_exc.SPDKException as exc:
                if not failed:
                    raise
                # Keep the error that got us here.
                LOG.error('Could not remove the temporary export %(nqn)s: '
                          '%(err)s', {'nqn': nqn, 'err': exc})

    # -- restart recovery ---------------------------------------------------

    def remember(self, volume_id, bdev, hosts, qos_limits=None):
        """Record an export Cinder's database says exists (at start-up)."""
        export = _Export(volume_id, self.nqn(volume_id), bdev,
                         self.namespace_uuid(volume_id), qos_limits)
        for host_nqn in hosts:
            key = naming.host_key_name(export.nqn, host_nqn)
            export.hosts[host_nqn] = (
                key if self._keys and self._keys.exists(key) else None)
        with self._desired_lock:
            self._desired[volume_id] = export

    def replay(self):
        """Re-create every desired export that SPDK does not have.

        One listing tells what is present; only what is missing is sent.
        Returns (NQNs restored, how many could not be).
        """
        self.ensure_transport()
        present = {s['nqn']: s for s in
                   self._client.call('nvmf_get_subsystems')}
        with self._desired_lock:
            wanted = list(self._desired.values())
        missing = [e for e in wanted if e.nqn not in present]
        incomplete = [e for e in wanted if e.nqn in present
                      and _lacks(present[e.nqn], e, self.portals())]
        todo = missing + incomplete
        results = []
        last_report = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(REPLAY_WORKERS) as pool:
            for nqn in pool.map(self._restore, todo):
                results.append(nqn)
                if time.monotonic() - last_report >= PROGRESS_EVERY:
                    last_report = time.monotonic()
                    LOG.info('Export replay: %(done)d of %(total)d done',
                             {'done': len(results), 'total': len(todo)})
        restored = [nqn for nqn in results if nqn]
        if restored:
            # Thousands of NQNs would make one line of hundreds of KiB.
            shown = ', '.join(restored[:LOGGED_NQNS])
            if len(restored) > LOGGED_NQNS:
                shown += ' and %d more' % (len(restored) - LOGGED_NQNS)
            LOG.warning('SPDK had lost %(count)d export(s); restored: '
                        '%(nqns)s', {'count': len(restored), 'nqns': shown})
        failed = len(todo) - len(restored)
        if failed:
            LOG.error('Export replay: %(failed)d of %(total)d export(s) '
                      'could not be restored (see the errors above)',
                      {'failed': failed, 'total': len(todo)})
        return restored, failed

    def restore(self, volume_id):
        """Re-create or complete one desired export (nothing for a volume
        that is not exported).
        """
        with self._desired_lock:
            export = self._desired.get(volume_id)
        if export is not None:
            with lockutils.lock('spdk-export-%s' % volume_id):
                self._create_subsystem(export)

    def _restore(self, export):
        try:
            with lockutils.lock('spdk-export-%s' % export.volume_id):
                self._create_subsystem(export)
            return export.nqn
        except spdk_exc.SPDKException as exc:
            LOG.error('Could not restore the export %(nqn)s: %(err)s',
                      {'nqn': export.nqn, 'err': exc})
            return None


def _hosts(subsystem):
    return {h['nqn'] for h in (subsystem or {}).get('hosts', [])}


def _listening(subsystem):
    return {(la.get('traddr'), str(la.get('trsvcid')))
            for la in (subsystem or {}).get('listen_addresses', [])}


def _lacks(subsystem, export, portals):
    return (not subsystem.get('namespaces')
            or set(export.hosts) != _hosts(subsystem)
            or not {(a, p) for a, p, _t in portals} <= _listening(subsystem))


def _namespace(export):
    # The namespace carries the Cinder volume id as UUID and NGUID so that
    # os-brick finds it by vol_uuid, and so that an SPDK initiator in the
    # same process as the lvol does not meet a clashing bdev UUID.
    return {'bdev_name': export.bdev, 'uuid': export.ns_uuid,
            'nguid': export.ns_uuid.replace('-', '').upper()}
