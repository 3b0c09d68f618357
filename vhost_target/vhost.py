"""What the agent asks of the compute node's SPDK vhost application.

An attachment is two SPDK objects: a ``bdev_nvme`` controller connected to
the storage node's subsystem over NVMe/TCP (as this host's NQN, with
reconnect settings, optionally a DH-HMAC-CHAP key from the keyring), and a
vhost-user-blk controller over its namespace bdev, on one reactor CPU,
whose socket QEMU opens. SPDK creates that socket with its own umask, so
the owner group and mode are set here.

A replicated volume has one ``bdev_nvme`` controller per copy, with finite
loss and I/O-fail timeouts (a copy that does not answer must fail its I/O
so that the mirror takes it out, where a single copy waits), and a raid1
over their namespaces (:mod:`vhost_target.mirror`) that the vhost
controller serves.
"""

import errno
import grp
import os
import signal
import socket
import time

from oslo_log import log as logging
from oslo_utils import excutils

from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import qos as spdk_qos
from vhost_target import config
from vhost_target import mirror as mirror_mod
from vhost_target.privileged import files as privileged_files
from vhost_target.privileged import vhost_user
from vhost_target import supervisor

LOG = logging.getLogger(__name__)

# Fault injection for the SPDK-tier crash tests: with this variable set to
# a crash point's name the agent SIGKILLs itself there, to show that the
# next start converges. Nothing sets it outside those tests.
CRASH_AT_ENV = 'SPDK_VHOST_TARGET_TEST_CRASH_AT'


def crash_point(name):
    if os.environ.get(CRASH_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# bdev_nvme_attach_controller's answers when the connect itself failed
# (module/bdev/nvme/bdev_nvme.c, v25.09): -EIO when the probe ended without
# a controller (TCP or NVMe connect refused, authentication failed), -ENODEV
# when it could not even start. Neither tells which; see _why_refused().
_CONNECT_FAILED = (-errno.EIO, -errno.ENODEV)
# How long the agent's own TCP probe of a portal may take, after SPDK's
# connect already failed.
PROBE_TIMEOUT = 2.0
# How long SPDK may take to stop the sessions whose socket was shut down.
SESSION_END_TIMEOUT = 5.0
# bdev_nvme_get_controllers' state of a connected controller, and of one
# SPDK no longer reconnects (a copy's with replica_ctrlr_loss_timeout_sec 0).
NVME_CONNECTED = 'enabled'
NVME_FAILED = 'failed'


def bdev_name(volume_id, replicated):
    """The bdev the vhost controller of a volume serves: the mirror of a
    replicated volume, else the NVMe namespace.
    """
    if replicated:
        return naming.raid_bdev_name(volume_id)
    return naming.namespace_bdev_name(naming.nvme_controller_name(volume_id))


def _copies(attachment):
    return len(attachment.replicas or ())


def _served_bdev(controller):
    """The bdev a vhost_get_controllers entry serves; None once it was
    hot-removed.
    """
    return ((controller.get('backend_specific') or {}).get('block')
            or {}).get('bdev')


class VhostTarget:
    def __init__(self, client, conf):
        """``conf``: the [spdk_vhost_target] option group."""
        self._client = client
        self._conf = conf
        self.socket_dir = conf.socket_dir
        self._key_dir = os.path.join(conf.state_dir, 'keys')
        self._keys = dhchap.KeyFiles(client, self._key_dir)
        self.mirror = mirror_mod.Mirror(client)

    @property
    def conf(self):
        """The [spdk_vhost_target] options this target was made with."""
        return self._conf

    def socket_path(self, volume_id):
        return os.path.join(self.socket_dir,
                            naming.vhost_controller_name(volume_id))

    # -- attach ---------------------------------------------------------

    def attach(self, attachment):
        """Create (or complete) one attachment; return its socket path.

        ``attachment`` is a state.Attachment whose fields the agent has
        validated. Whatever this call made (key file, keyring entry, NVMe
        controller, vhost controller and with it the socket) is removed
        again if a later step fails, the socket's owner and mode included.
        """
        try:
            return self._attach(attachment)
        except spdk_exc.SPDKRPCError as exc:
            if not (attachment.qos and spdk_qos.change_refused(exc)):
                raise
        # An attachment no guest has used yet (a hard reboot's re-attach)
        # whose limits SPDK will not change until one does: made again (the
        # detach refuses if a guest is connected after all), it starts with
        # the new ones.
        LOG.info('Volume %s: new QoS limits before any guest connected; '
                 'attaching it again', attachment.volume_id)
        self.detach(attachment.volume_id, _copies(attachment))
        return self._attach(attachment)

    def _attach(self, attachment):
        made = []
        try:
            key = self._load_key(attachment, made)
            if attachment.replicas is None:
                bdev = self._connect(attachment, *attachment.targets()[0],
                                     key, made)
                crash_point('attach:nvme-connected')
            else:
                bdev = self._mirror(attachment, key, made)
            self._create_controller(attachment, bdev, made)
            crash_point('attach:vhost-created')
            if attachment.qos:
                self.set_qos(attachment.volume_id, attachment.qos,
                             attachment.replicas is not None)
            return self.secure_socket(attachment.volume_id)
        except Exception as exc:
            for undo in reversed(made):
                try:
                    undo()
                except (spdk_exc.SPDKException, OSError) as undo_exc:
                    LOG.error('Undoing a failed attach of %(id)s: %(err)s',
                              {'id': attachment.volume_id, 'err': undo_exc})
            if isinstance(exc, OSError):
                # A local file or socket problem; the caller gets the
                # agent's error, not a bare OSError.
                raise spdk_exc.AttachError(volume=attachment.volume_id,
                                           reason=str(exc)) from exc
            raise

    def _mirror(self, attachment, key, made):
        """Connect the copies that answer and mirror them; return the
        mirror's bdev.

        A copy whose storage node does not answer is left out when SPDK
        starts the mirror without it, which it does only when the other
        copies' superblocks record it out of the mirror (it left under a
        guest's writes, which they all have): a VM started, rebooted or
        moved, or an SPDK restarted, while a storage node is down. The
        health check connects it when it answers, and it is rebuilt.
        """
        volume_id = attachment.volume_id
        targets = attachment.targets()
        absent = {}
        for index, (name, nqn, portals) in enumerate(targets):
            try:
                self._connect(attachment, name, nqn, portals, key, made)
            except spdk_exc.AttachError as exc:
                absent[index] = exc.kwargs['reason']
        crash_point('attach:nvme-connected')
        if len(absent) == len(targets):
            raise spdk_exc.AttachError(
                volume=volume_id, reason='no copy can be connected: %s' % (
                    '; '.join('copy %d: %s' % item
                              for item in sorted(absent.items()))))
        bdev, created = self.mirror.assemble(
            volume_id, [name for name, _nqn, _portals in targets], absent)
        if created:
            made.append(lambda: self.mirror.delete(bdev))
        if absent:
            LOG.warning('Volume %(id)s: mirrored without copy %(copies)s, '
                        'which cannot be connected (%(why)s); it is put '
                        'back and rebuilt when it can',
                        {'id': volume_id,
                         'copies': ', '.join(str(i) for i in sorted(absent)),
                         'why': '; '.join(absent.values())})
        return bdev

    def _load_key(self, attachment, made):
        if not attachment.dhchap_secret:
            return None
        name = naming.agent_key_name(attachment.volume_id)
        made.append(lambda: self._keys.remove(name))
        self._keys.write(name, attachment.dhchap_secret)
        if not self._keys.load(name):
            # Loaded by an earlier attempt, which also owns the file.
            made.pop()
        return name

    def _timeouts(self, attachment):
        """bdev_nvme's loss settings: a copy of a mirror gives up soon (the
        mirror goes on without it), a single copy as configured.
        """
        conf = self._conf
        if attachment.replicas is None:
            return config.loss_settings(conf.ctrlr_loss_timeout_sec,
                                        conf.reconnect_delay_sec,
                                        conf.fast_io_fail_timeout_sec)
        timeouts = config.loss_settings(conf.replica_ctrlr_loss_timeout_sec,
                                        conf.reconnect_delay_sec,
                                        conf.replica_fast_io_fail_timeout_sec)
        if conf.target_answer_timeout_sec:
            # A node that accepts TCP connections and answers nothing
            # (hung) must not hold the agent's connect for long.
            timeouts['fabrics_connect_timeout_us'] = (
                conf.target_answer_timeout_sec * 1000000)
        return timeouts

    def _connect(self, attachment, name, target_nqn, portals, key, made):
        """Connect one NVMe controller; return its namespace bdev.

        One RPC when nothing exists yet (SPDK serves RPCs on a 4 ms timer,
        so an up-front look-up would double an attach); an existing
        controller (a retry, a replay into an SPDK that kept it) is found
        from the error.
        """
        failures = []
        for address, port, _transport in portals:
            params = dict(self._timeouts(attachment), **{
                'name': name, 'trtype': 'tcp',
                'adrfam': naming.adrfam(address),
                'traddr': address, 'trsvcid': str(port),
                'subnqn': target_nqn,
                'hostnqn': attachment.host_nqn,
            })
            if key:
                params['dhchap_key'] = key
            try:
                bdevs = self._client.call('bdev_nvme_attach_controller',
                                          params)
            except spdk_exc.SPDKRPCError as exc:
                existing = self._nvme_controller(name)
                if existing is not None:
                    self._check_existing(attachment, existing, target_nqn)
                    return naming.namespace_bdev_name(name)
                failures.append((address, port, exc))
                continue
            made.append(lambda: self.disconnect(name))
            if not bdevs:
                raise spdk_exc.AttachError(
                    volume=attachment.volume_id,
                    reason='the subsystem %s has no namespace' % target_nqn)
            return bdevs[0]
        raise spdk_exc.AttachError(
            volume=attachment.volume_id,
            reason='; '.join(self._why_refused(attachment, target_nqn, *f)
                             for f in failures))

    def _why_refused(self, attachment, target_nqn, address, port, exc):
        """Why SPDK could not connect to one portal, as far as is knowable.

        SPDK answers every failed connect with the same error, so the agent
        tries a TCP connection to the portal itself: if that fails too, the
        network or the target's listener is the cause, not the NVMe-level
        checks (subsystem, host ACL, DH-HMAC-CHAP) behind it.
        """
        portal = '[%s]:%s' % (address, port) if ':' in address else (
            '%s:%s' % (address, port))
        if exc.code not in _CONNECT_FAILED:
            return 'SPDK refused to connect to %s: %s' % (portal, exc)
        try:
            probe = socket.create_connection((address, int(port)),
                                             timeout=PROBE_TIMEOUT)
        except socket.timeout:
            return ('no answer from %s within %ss (a firewall, a wrong '
                    'address, or the target is down); SPDK: %s'
                    % (portal, PROBE_TIMEOUT, exc.error))
        except OSError as net_exc:
            # strerror() of the errno: eventlet's green sockets put the
            # errno's name ("ECONNREFUSED") where strerror would be.
            why = (os.strerror(net_exc.errno) if net_exc.errno
                   else str(net_exc))
            return ('could not reach the storage target at %s: %s (is an '
                    'NVMe/TCP listener there?); SPDK: %s'
                    % (portal, why, exc.error))
        probe.close()
        causes = ['the subsystem %s does not exist there' % target_nqn,
                  'host %s is not allowed on it' % attachment.host_nqn]
        if attachment.dhchap_secret:
            causes.append('DH-HMAC-CHAP authentication failed (a wrong or '
                          'outdated secret)')
        else:
            causes.append('it requires DH-HMAC-CHAP and the request carried '
                          'no secret')
        return ('the storage target at %s accepts TCP connections but '
                'refused the NVMe connect (SPDK: %s): %s, or %s'
                % (portal, exc.error, ', '.join(causes[:-1]), causes[-1]))

    def _nvme_controller(self, name):
        # Asking for one missing name is an EINVAL error in SPDK; the full
        # listing answers without error semantics.
        for controller in self._client.call('bdev_nvme_get_controllers'):
            if controller['name'] == name:
                return controller
        return None

    @staticmethod
    def _check_existing(attachment, controller, target_nqn):
        """An existing controller is taken over only if it is this
        connection (a retry, or an agent that died before it recorded the
        attach): one to another subsystem or as another host would serve
        the guest someone else's disk under this volume's name.
        """
        paths = controller.get('ctrlrs') or []
        subsystems = {p.get('trid', {}).get('subnqn') for p in paths}
        hosts = {p.get('host', {}).get('nqn') for p in paths}
        if subsystems == {target_nqn} and hosts == {attachment.host_nqn}:
            return
        raise spdk_exc.AttachError(
            volume=attachment.volume_id,
            reason='SPDK already has an NVMe controller %s connected to %s '
                   'as %s, not to %s as %s; detach the volume first' % (
                       controller['name'], ', '.join(sorted(map(
                           str, subsystems))), ', '.join(sorted(map(
                               str, hosts))), target_nqn,
                       attachment.host_nqn))

    def disconnect(self, name):
        """Detach the NVMe controller ``name`` (gone already: done)."""
        try:
            self._client.call('bdev_nvme_detach_controller', {'name': name})
        except spdk_exc.SPDKNotFound:
            pass

    def _create_controller(self, attachment, bdev, made):
        ctrlr = naming.vhost_controller_name(attachment.volume_id)
        try:
            self._client.call('vhost_create_blk_controller', {
                'ctrlr': ctrlr, 'dev_name': bdev,
                'cpumask': '0x%x' % (1 << attachment.cpu)})
        except spdk_exc.SPDKRPCError:
            # Not idempotent in SPDK (EEXIST): one already there will do,
            # if it serves the bdev. One whose bdev bdev_nvme deleted (the
            # controller was lost) fails every guest I/O and never gets
            # the new bdev: it is re-created on the same socket path.
            found = self._vhost_controller(ctrlr)
            if found is None:
                raise
            if _served_bdev(found) == bdev:
                return
            LOG.warning('The vhost controller %(ctrlr)s serves bdev '
                        '%(old)s, not %(new)s; re-creating it',
                        {'ctrlr': ctrlr, 'old': _served_bdev(found),
                         'new': bdev})
            if _served_bdev(found) is None:
                found = self._end_sessions(attachment.volume_id, found)
            # Deleting it under an open vhost-user connection would make
            # SPDK loop on the delete; the caller retries later.
            self.check_not_busy(attachment.volume_id, found)
            self._delete_controller(ctrlr)
            self._client.call('vhost_create_blk_controller', {
                'ctrlr': ctrlr, 'dev_name': bdev,
                'cpumask': '0x%x' % (1 << attachment.cpu)})
        made.append(lambda: self._undo_controller(attachment.volume_id))

    def _vhost_controller(self, ctrlr):
        try:
            found = self._client.call('vhost_get_controllers',
                                      {'name': ctrlr})
        except spdk_exc.SPDKRPCError:
            return None
        return found[0] if found else None

    def _undo_controller(self, volume_id):
        self._delete_controller(naming.vhost_controller_name(volume_id))
        # SPDK unlinks the socket with the controller; one left behind
        # (SPDK died meanwhile) would only confuse the next attach.
        self._remove_socket(volume_id)

    def _delete_controller(self, ctrlr):
        try:
            self._client.call('vhost_delete_controller', {'ctrlr': ctrlr})
        except spdk_exc.SPDKRPCError:
            if self._vhost_controller(ctrlr) is not None:
                raise

    def secure_socket(self, volume_id):
        path = self.socket_path(volume_id)
        try:
            grp.getgrnam(self._conf.socket_group)
        except KeyError:
            raise spdk_exc.AttachError(
                volume=volume_id,
                reason='socket_group %r does not exist on this host'
                       % self._conf.socket_group)
        # SPDK (root) made the socket in root's directory: the privsep
        # daemon gives it to QEMU's group.
        privileged_files.secure_vhost_socket(
            path, self._conf.socket_group, int(self._conf.socket_mode, 8))
        return path

    # -- detach, resize, QoS ----------------------------------------------

    def detach(self, volume_id, copies=0):
        """Remove the controller, the mirror of a volume of ``copies``
        copies, the NVMe connection(s) and the key.

        Refused with VolumeBusy, before anything is removed, while a
        vhost-user connection is open: SPDK v25.09 does not fail the
        delete then but retries it internally, logging "has still valid
        connection" in a tight loop until QEMU lets go, and then deletes
        the controller behind the agent's back.
        """
        ctrlr = naming.vhost_controller_name(volume_id)
        # Closed to new connections before the look: QEMU runs as
        # socket_group, not root, so none can open between the look and
        # the delete. A crash leaves the mode to the next reconcile.
        closed = self._set_socket_mode(volume_id, 0)
        found = self._vhost_controller(ctrlr)
        if found is not None:
            try:
                self.check_not_busy(volume_id,
                                    self._fail_stuck_io(volume_id, found))
            except spdk_exc.VolumeBusy:
                if closed:
                    self._set_socket_mode(volume_id,
                                          int(self._conf.socket_mode, 8))
                raise
            self._delete_controller(ctrlr)
        crash_point('detach:vhost-deleted')
        if copies:
            # The mirror goes first: copies taken away under it would be
            # recorded missing in the others' superblocks.
            self.mirror.delete(naming.raid_bdev_name(volume_id))
            for index in range(copies):
                self.disconnect(naming.replica_controller_name(volume_id,
                                                               index))
        else:
            self.disconnect(naming.nvme_controller_name(volume_id))
        crash_point('detach:nvme-detached')
        self._keys.remove(naming.agent_key_name(volume_id))
        self._remove_socket(volume_id)

    def _set_socket_mode(self, volume_id, mode):
        # False when the socket is not there.
        return privileged_files.set_vhost_socket_mode(
            self.socket_path(volume_id), mode)

    def _end_sessions(self, volume_id, controller):
        """End the guest's vhost-user sessions on a controller whose bdev
        was hot-removed; return the controller as SPDK then lists it.

        Every I/O of those sessions already fails, so nothing is lost:
        QEMU reconnects (its chardev has ``reconnect``) to the controller
        re-created on the same path and resubmits what was in flight.
        """
        if not controller.get('sessions'):
            return controller
        path = self.socket_path(volume_id)
        _state, pid = supervisor.socket_owner(self._conf.rpc_socket)
        if pid is None:
            return controller
        try:
            closed = vhost_user.disconnect_sessions(pid, path)
        except (spdk_exc.SessionsError, OSError) as exc:
            # The controller stays busy; the next look tries again.
            LOG.warning('Volume %(id)s: could not end the vhost-user '
                        'sessions on %(path)s: %(err)s',
                        {'id': volume_id, 'path': path, 'err': exc})
            return controller
        LOG.warning('Volume %(id)s: ended %(n)d vhost-user session(s) on '
                    '%(path)s, whose bdev is gone, so that the guest '
                    'reconnects to the rebuilt chain',
                    {'id': volume_id, 'n': closed, 'path': path})
        return self._wait_sessions_end(volume_id, controller)

    def _fail_stuck_io(self, volume_id, controller):
        """Let the sessions of a volume whose storage target does not
        answer end; return the controller as SPDK then lists it.

        SPDK ends a session only once its I/O has completed, and
        bdev_nvme retries I/O to a target that does not answer (lost, or
        one that fenced this host after an evacuation) for ever: a guest
        gone from such a volume leaves its session behind. The volume's
        NVMe controller is detached first, which fails that I/O (a guest
        still there sees it fail: its volume is being detached).
        """
        if not controller.get('sessions'):
            return controller
        state = self.nvme_states().get(volume_id)
        if state in (None, NVME_CONNECTED):
            return controller
        LOG.warning('Volume %(id)s: its storage target does not answer '
                    '(NVMe controller %(state)s); detaching the controller '
                    'so that the I/O its vhost-user session waits for '
                    'fails', {'id': volume_id, 'state': state})
        self.disconnect(naming.nvme_controller_name(volume_id))
        return self._wait_sessions_end(volume_id, controller)

    def _wait_sessions_end(self, volume_id, controller):
        ctrlr = naming.vhost_controller_name(volume_id)
        deadline = time.monotonic() + SESSION_END_TIMEOUT
        while True:
            found = self._vhost_controller(ctrlr)
            if (found is None or not found.get('sessions')
                    or time.monotonic() >= deadline):
                return found or controller
            time.sleep(0.05)

    def check_not_busy(self, volume_id, controller):
        """VolumeBusy when the controller (vhost_get_controllers' entry)
        has a vhost-user session: QEMU holds the socket open.
        """
        sessions = controller.get('sessions') or []
        if sessions:
            raise spdk_exc.VolumeBusy(volume=volume_id, sessions=len(sessions),
                                      socket=self.socket_path(volume_id))

    def _remove_socket(self, volume_id):
        # socket_dir is root's: the privsep daemon unlinks.
        privileged_files.remove_vhost_socket(self.socket_path(volume_id))

    def size_bytes(self, volume_id, replicated=False):
        bdev = self._client.call('bdev_get_bdevs', {
            'name': bdev_name(volume_id, replicated)})[0]
        return bdev['num_blocks'] * bdev['block_size']

    def set_qos(self, volume_id, qos, replicated=False):
        """Front-end limits (libvirt iotune does not reach vhost-user).

        Limits SPDK already has are not set again: with no guest
        connected SPDK refuses any change of existing limits (EAGAIN, no
        I/O channel yet), which would fail the re-attach of a hard reboot.
        """
        bdev = bdev_name(volume_id, replicated)
        params = spdk_qos.full_limits(qos, bdev)
        current = self._client.call('bdev_get_bdevs', {'name': bdev})[0].get(
            'assigned_rate_limits', {})
        if all(current.get(key) == params[key]
               for key in spdk_qos.LIMIT_KEYS):
            return
        self._client.call('bdev_set_qos_limit', params)

    def nvme_states(self):
        """``{controller name: state}`` of the agent's NVMe controllers
        (a single copy's is named after its volume id), from one listing
        call: bdev_nvme_get_controllers' ``ctrlrs[].state`` (v25.09:
        enabled, resetting, reconnect_is_delayed, failed, disabled,
        deleting) of the first path.
        """
        states = {}
        for ctrlr in self._client.call('bdev_nvme_get_controllers'):
            name = ctrlr['name']
            if (naming.NVME_CONTROLLER.fullmatch(name)
                    or naming.REPLICA_CONTROLLER.fullmatch(name)):
                paths = ctrlr.get('ctrlrs') or [{}]
                states[name] = paths[0].get('state', 'unknown')
        return states

    def reconnect_copy(self, attachment, index):
        """Connect the NVMe controller of a replicated volume's copy
        again (SPDK deleted it when the copy stopped answering); the
        mirror takes it back by itself (its superblock names it) and
        rebuilds it.
        """
        name, target_nqn, portals = attachment.targets()[index]
        key = (naming.agent_key_name(attachment.volume_id)
               if attachment.dhchap_secret else None)
        return self._connect(attachment, name, target_nqn, portals, key, [])

    def replace_copy(self, old, new, index):
        """Put the copy ``index`` of ``new`` (an attachment the same as
        ``old`` but for that copy) in the place of ``old``'s: the old copy
        leaves the mirror and its controller goes, the new copy's
        controller takes the same name and the mirror adds it, rebuilding
        it from the others (a full copy).

        :raises AttachError: when the new copy cannot be connected; the
            old copy's controller is connected again (the health check
            puts it back in the mirror).
        """
        volume_id = old.volume_id
        raid_name = naming.raid_bdev_name(volume_id)
        name = old.targets()[index][0]
        member = naming.namespace_bdev_name(name)
        raid = self.mirror.get(raid_name)
        if raid is not None and member in {
                b.get('name') for b in raid.get('base_bdevs_list') or ()}:
            self.mirror.remove(member)
        self.disconnect(name)
        crash_point('replace:old-copy-gone')
        try:
            self.reconnect_copy(new, index)
        except spdk_exc.SPDKException:
            with excutils.save_and_reraise_exception():
                try:
                    self.reconnect_copy(old, index)
                except spdk_exc.SPDKException:
                    pass   # the health check keeps trying
        return member

    def controllers(self):
        """What SPDK has now: vhost controllers and NVMe controllers."""
        return {
            'vhost': self._client.call('vhost_get_controllers'),
            'nvme': self._client.call('bdev_nvme_get_controllers'),
        }

    # -- reconcile --------------------------------------------------------

    def inventory(self):
        """Everything under the agent's names, SPDK's and on disk, by
        volume id: ``{volume_id: {'vhost': entry, 'nvme': entry,
        'replicas': {index: entry}, 'raid': entry, 'key': bool,
        'files': [paths]}}``. Four listing calls, whatever the number of
        volumes.
        """
        found = {}

        def entry(volume_id):
            return found.setdefault(volume_id, {
                'vhost': None, 'nvme': None, 'replicas': {}, 'raid': None,
                'key': False, 'files': []})
        for ctrlr in self._client.call('vhost_get_controllers'):
            match = naming.VHOST_CONTROLLER.fullmatch(ctrlr['ctrlr'])
            if match:
                entry(match.group(1))['vhost'] = ctrlr
        for ctrlr in self._client.call('bdev_nvme_get_controllers'):
            match = naming.NVME_CONTROLLER.fullmatch(ctrlr['name'])
            if match:
                entry(match.group(1))['nvme'] = ctrlr
            match = naming.REPLICA_CONTROLLER.fullmatch(ctrlr['name'])
            if match:
                entry(match.group(1))['replicas'][int(match.group(2))] = ctrlr
        for name, raid in self.mirror.listing().items():
            match = naming.NVME_CONTROLLER.fullmatch(name)
            if match:
                entry(match.group(1))['raid'] = raid
        for key in self._client.call('keyring_get_keys'):
            match = naming.AGENT_KEY.fullmatch(key['name'])
            if match and not match.group(2):
                entry(match.group(1))['key'] = True
        for directory, pattern in (
                (self.socket_dir, naming.VHOST_CONTROLLER),
                (self._key_dir, naming.AGENT_KEY)):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                match = pattern.fullmatch(name)
                if match:
                    entry(match.group(1))['files'].append(
                        os.path.join(directory, name))
        return found

    @staticmethod
    def copies_found(objects):
        """How many copies' controllers SPDK has of an inventory entry's
        replicated volume (0: one of a single copy).
        """
        return max(objects.get('replicas') or {-1: None}) + 1

    @staticmethod
    def complete(attachment, objects):
        """Whether SPDK serves ``attachment`` whole: the vhost controller
        on the NVMe namespace bdev (on the mirror of a replicated volume),
        every NVMe controller to its copy's subsystem as the attachment's
        host, and the socket there. A mirror short of a copy is whole
        here: putting the copy back is the health check's.
        """
        vhost_ctrlr = objects['vhost']
        if vhost_ctrlr is None or _served_bdev(vhost_ctrlr) != bdev_name(
                attachment.volume_id, attachment.replicas is not None):
            return False
        if attachment.replicas is not None and objects['raid'] is None:
            return False
        if attachment.dhchap_secret and not objects['key']:
            return False
        nvme = dict(objects['replicas'] or {})
        if objects['nvme'] is not None:
            nvme[None] = objects['nvme']
        for index, (_name, target_nqn, _portals) in enumerate(
                attachment.targets()):
            found = nvme.get(None if attachment.replicas is None else index)
            if found is None:
                return False
            try:
                VhostTarget._check_existing(attachment, found, target_nqn)
            except spdk_exc.AttachError:
                return False
        return naming.vhost_controller_name(attachment.volume_id) in {
            os.path.basename(path) for path in objects['files']}
