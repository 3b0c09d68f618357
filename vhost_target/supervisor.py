"""Starts SPDK's vhost application, or takes over the one that runs, and
keeps it running.

The reactor mask, the per-NUMA-node hugepage memory and the socket
directory come from the plan. The agent records the SPDK it starts in a pid
file (pid and the process' start time, so that a reused pid is not taken
for it). A restarted agent takes that SPDK over when it is still the one
listening on the RPC socket and answers ``spdk_get_version``: guests keep
their I/O through an agent restart or upgrade, and a second SPDK, which
would find the hugepages and CPU locks taken, is never started. A socket
someone else serves is never deleted; one nobody listens on is stale and
removed before SPDK is started.

When SPDK dies the supervisor starts it again (waiting 0.5 s, doubling up to
``restart_backoff_max`` while it keeps dying soon after start) and calls
``on_ready`` so that the agent reconciles its attachments; QEMU's
vhost-user reconnect then finds the socket again. In ``adopt`` mode someone
else runs SPDK and the supervisor only watches it: a restart shows as a new
RPC socket.
"""

import errno
import json
import os
import select
import socket
import stat
import struct
import threading
import time

from oslo_log import log as logging

from spdk_common import binaries
from spdk_common import exception as spdk_exc
from spdk_common import files
from spdk_common import rpc
from vhost_target.privileged import files as privileged_files
from vhost_target.privileged import procfs
from vhost_target.privileged import spdk as privileged_spdk

LOG = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
WATCH_INTERVAL = 1.0
# How often the watcher looks at the stop flag while SPDK runs.
POLL_INTERVAL = 0.5
# A process that ran this long is healthy again: the back-off starts over.
STABLE_AFTER = 30.0


def startup_config_path(conf):
    return os.path.join(conf.state_dir, 'spdk-vhost-startup.json')


def pid_file_path(conf):
    return os.path.join(conf.state_dir, 'spdk-vhost.pid')


def agent_pid_file_path(conf):
    return os.path.join(conf.state_dir, 'agent.pid')


# One reading of /proc/<pid>/stat for the agent and its privsep daemon
# (which cannot import this module).
process_start_time = procfs.start_time


def write_pid_file(path, pid):
    """Record ``pid`` with its start time, atomically, 0600."""
    record = {'pid': pid, 'start_time': process_start_time(pid)}
    files.write_atomically(path, json.dumps(record), 0o600)


def read_live_pid(path):
    """The pid a pid file records if that very process still runs."""
    try:
        with open(path) as f:
            record = json.load(f)
        pid, started = int(record['pid']), record['start_time']
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if started is None or process_start_time(pid) != started:
        return None
    return pid


def remove_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def socket_owner(path):
    """Who listens on the unix socket ``path``: ``(state, pid)``.

    ``state`` is ``absent`` (no file), ``stale`` (a file nobody listens
    on: connecting is refused) or ``live``, with the listening process' pid
    from SO_PEERCRED (the credentials of the process that called listen()).
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except FileNotFoundError:
        return 'absent', None
    except ConnectionRefusedError:
        return 'stale', None
    except OSError as exc:
        if exc.errno == errno.ENOTSOCK:
            return 'stale', None
        # A full backlog or a timeout: somebody listens.
        return 'live', None
    else:
        creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                 struct.calcsize('3i'))
        return 'live', struct.unpack('3i', creds)[0]
    finally:
        probe.close()


def wait_for_exit(pid, started, timeout, stopping=None):
    """Wait until process ``pid`` (started at ``started``) is gone.

    True when it is gone, False on timeout or when ``stopping`` is set.
    A pidfd tells the exit at once, whoever the process' parent is (an
    SPDK taken over from an earlier agent is not this process' child).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if process_start_time(pid) != started:
            return True   # the pid is another process' now
        while True:
            wait = POLL_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return False
            if _readable(fd, wait):
                return True
            if stopping is not None and stopping.is_set():
                return False
    finally:
        os.close(fd)


def _readable(fd, timeout):
    # eventlet's green select (in processes that monkey-patch, such as
    # the test runner) has no poll(); select() waits on the hub there.
    if hasattr(select, 'poll'):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    return bool(select.select([fd], [], [], timeout)[0])


def _vhost_args(binary, plan, conf):
    # privileged.spdk.start_vhost's arguments, of which it makes the
    # command line itself.
    # SPDK's own -s only without an env context (which has the per-node
    # sizes).
    memory_mib = (None if plan.env_context
                  else sum(plan.memory_mib_by_node.values()))
    return (binary, plan.cpumask, conf.rpc_socket, conf.socket_dir,
            startup_config_path(conf), plan.env_context, memory_mib,
            plan.page_size_kib, conf.share_reactor_cpus)


class Supervisor:
    def __init__(self, conf, plan, on_ready, binary=None, log_path=None,
                 on_poll=None):
        self._conf = conf
        self._plan = plan
        self._on_ready = on_ready
        # Called every health_check_interval_sec while SPDK runs (the
        # agent's look at its controllers), from this one watcher thread.
        self._on_poll = on_poll
        self._binary = binary
        self._log_path = log_path or os.path.join(conf.state_dir,
                                                  'spdk-vhost.log')
        self._pid_file = pid_file_path(conf)
        # Fixed for the supervisor's life: SPDK's own or someone else's.
        self._adopt = conf.adopt
        # The SPDK watched, by pid and start time: the privsep daemon's
        # child, or one taken over; never this process' child.
        self._pid = None
        self._started = None
        self._identity = None
        self._stopping = threading.Event()
        self._thread = None
        # Completed recoveries: SPDK restarted and on_ready returned.
        self.restarts = 0
        # True when start() found this agent's SPDK running and kept it.
        self.took_over = False

    @property
    def pid(self):
        return self._pid

    def _prepare_dirs(self):
        # The agent's own, its user's: first, so that the daemon does not
        # make it root's on the way to a socket_dir inside it (the
        # default).
        os.makedirs(self._conf.state_dir, mode=0o700, exist_ok=True)
        # Both root's, 0750 (the privsep daemon sets them up): the RPC
        # socket's directory for the agent's group only (SPDK RPC has no
        # authentication), the vhost-user sockets' for QEMU's group.
        privileged_files.set_up_rpc_dir(self._conf.rpc_socket,
                                        os.getegid())
        privileged_files.set_up_socket_dir(self._conf.socket_dir,
                                           self._conf.socket_group)

    def _alive(self):
        return (self._pid is not None
                and process_start_time(self._pid) == self._started)

    def _remove_stale_socket(self):
        """Remove the RPC socket only when nobody listens on it.

        A live socket belongs to an SPDK that serves guests: deleting it
        would leave that SPDK unmanageable, and a second SPDK would fail
        on its hugepages and CPU locks.
        """
        state, owner = socket_owner(self._conf.rpc_socket)
        if state == 'live' and owner is not None:
            raise self._served_by(owner)
        if state == 'stale':
            LOG.info('Removing the stale RPC socket %s', self._conf.rpc_socket)
        # In root's directory; the daemon looks again that nobody listens
        # (also when this process could not: a socket root still owns,
        # left by an agent that ran as root, refuses its connection).
        try:
            privileged_spdk.remove_stale_rpc_socket(self._conf.rpc_socket)
        except FileExistsError:
            raise self._served_by(owner)

    def _served_by(self, owner):
        return spdk_exc.SupervisorError(
            reason='%s is served by process %s, which this agent did '
                   'not start (%s does not name it); stop it, or set '
                   '[spdk_vhost_target] adopt = true to use it' % (
                       self._conf.rpc_socket, owner, self._pid_file))

    def _spawn(self):
        binary = (self._binary or self._conf.spdk_vhost_binary
                  or binaries.find('vhost'))
        if not binary:
            raise spdk_exc.SupervisorError(
                reason='the vhost binary was not found; set '
                       '[spdk_vhost_target] spdk_vhost_binary or '
                       'SPDK_BIN_DIR')
        self._remove_stale_socket()
        # Buffer pools that fit in the hugepages Nova leaves to SPDK.
        with open(startup_config_path(self._conf), 'w') as f:
            json.dump(self._plan.startup_config, f)
        # Started by the privsep daemon, which reaps it.
        try:
            self._pid = privileged_spdk.start_vhost(
                *_vhost_args(binary, self._plan, self._conf),
                log_path=self._log_path)
        except (spdk_exc.UnsafePath, ValueError, OSError) as exc:
            # A SupervisorError, which the watcher logs and retries on.
            raise spdk_exc.SupervisorError(
                reason='could not be started: %s' % exc)
        self._started = process_start_time(self._pid)
        # Recorded at once: an agent killed from here on finds its SPDK.
        write_pid_file(self._pid_file, self._pid)
        LOG.info('Started SPDK vhost, pid %d', self._pid)

    def _take_over(self):
        """Keep the SPDK an earlier run of this agent started, if it is
        still the one serving the RPC socket; True when taken over.
        """
        pid = read_live_pid(self._pid_file)
        if pid is None:
            return False
        state, owner = socket_owner(self._conf.rpc_socket)
        if state == 'live' and owner is not None and owner != pid:
            return False   # _spawn() refuses the other process' socket
        self._pid = pid
        self._started = process_start_time(pid)
        # Not listening yet: the earlier agent died while SPDK started up.
        try:
            self._wait_for_rpc()
        except spdk_exc.SupervisorError as exc:
            LOG.warning('SPDK vhost pid %(pid)d of an earlier run does not '
                        'serve: %(err)s', {'pid': pid, 'err': exc})
            if self._alive():
                raise
            return False
        state, owner = socket_owner(self._conf.rpc_socket)
        if owner != pid:
            raise spdk_exc.SupervisorError(
                reason='%s answers from process %s, not from pid %d that '
                       '%s records' % (self._conf.rpc_socket, owner, pid,
                                       self._pid_file))
        LOG.info('Took over SPDK vhost pid %d, started by an earlier run of '
                 'the agent; it kept serving its guests', pid)
        self.took_over = True
        return True

    def _wait_for_rpc(self):
        client = rpc.SPDKClient(self._conf.rpc_socket, timeout=5.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._pid is not None and not self._alive():
                    status = 'unknown'   # the daemon's child, not ours
                    raise spdk_exc.SupervisorError(
                        reason='exited with status %s during start-up (%s); '
                               'see %s' % (status, self._logged_errors(),
                                           self._log_path))
                self._secure_rpc_socket()
                try:
                    client.call('spdk_get_version')
                    return
                except spdk_exc.SPDKUnavailable:
                    time.sleep(0.05)
        finally:
            client.close()
        raise spdk_exc.SupervisorError(
            reason='no RPC answer at %s within %ds'
                   % (self._conf.rpc_socket, STARTUP_TIMEOUT))

    def _secure_rpc_socket(self):
        """Have the RPC socket SPDK (root) made given to this process'
        user, 0600, so that the agent reaches SPDK also when it runs
        unprivileged. An adopted SPDK's socket is its owner's business.
        """
        if self._adopt or self._pid is None:
            return
        try:
            st = os.stat(self._conf.rpc_socket)
        except FileNotFoundError:
            return   # not made yet
        if (st.st_uid == os.geteuid()
                and stat.S_IMODE(st.st_mode) == 0o600):
            return
        # False while SPDK does not listen yet: the next look retries.
        try:
            privileged_spdk.secure_rpc_socket(
                self._pid, self._conf.rpc_socket, os.geteuid())
        except spdk_exc.NotSPDK as exc:
            if self._alive():
                raise spdk_exc.SupervisorError(reason=str(exc))
            # Died meanwhile: the next look tells it.
        except (spdk_exc.UnsafePath, OSError) as exc:
            raise spdk_exc.SupervisorError(reason='securing %s: %s' % (
                self._conf.rpc_socket, exc))

    def _logged_errors(self, last=3):
        """SPDK's last error lines: why it would not start."""
        try:
            with open(self._log_path, errors='replace') as log:
                errors = [line.strip() for line in log if '*ERROR*' in line]
        except OSError:
            errors = []
        return '; '.join(errors[-last:]) or 'no error logged'

    def start(self):
        """Take over, start or adopt SPDK, reconcile, and watch it."""
        self._prepare_dirs()
        if not self._adopt and not self._take_over():
            self._spawn()
        self._wait_for_rpc()
        # Taken before on_ready: a restart from here on is noticed.
        self._identity = self._socket_identity()
        self._on_ready()
        self._thread = threading.Thread(target=self._watch,
                                        name='spdk-supervisor', daemon=True)
        self._thread.start()

    def _watch(self):
        """One loop for every mode: wait until SPDK is gone, bring it
        back (start it, or wait for whoever runs it), then on_ready.
        """
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            if not self._wait_gone():
                return
            if self._adopt:
                LOG.warning('Adopted SPDK vhost has restarted; reconciling')
            else:
                if time.monotonic() - started > STABLE_AFTER:
                    backoff = 0.5
                status = 'an unknown status (not this process\' child)'
                LOG.error('SPDK vhost (pid %(pid)d) exited with %(status)s; '
                          'restarting in %(delay).1fs',
                          {'pid': self._pid, 'status': status,
                           'delay': backoff})
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self._conf.restart_backoff_max)
            try:
                if not self._adopt:
                    self._spawn()
                self._wait_for_rpc()
                self._identity = self._socket_identity()
                self._on_ready()
                self.restarts += 1
            except spdk_exc.SPDKException as exc:
                LOG.error('Restarting SPDK vhost failed: %s', exc)

    def _poll_interval(self):
        if self._on_poll is None:
            return None
        return self._conf.health_check_interval_sec

    def _poll(self):
        try:
            self._on_poll()
        except Exception:
            # A failed look must not end the watcher that restarts SPDK.
            LOG.exception('Health check of the attachments failed')

    def _wait_gone(self):
        """True once SPDK is gone; False when the supervisor stops."""
        if not self._adopt:
            while self._alive():
                if wait_for_exit(self._pid, self._started,
                                 self._poll_interval(), self._stopping):
                    return True
                if self._stopping.is_set():
                    return False
                self._poll()
            return True
        # Someone else's SPDK: a restarted one makes its RPC socket anew,
        # so the socket's identity tells a restart even when it was
        # quicker than this poll.
        next_poll = time.monotonic()
        while not self._stopping.wait(WATCH_INTERVAL):
            current = self._socket_identity()
            if current is not None and current != self._identity:
                return True
            interval = self._poll_interval()
            if interval is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + interval
                self._poll()
        return False

    def _socket_identity(self):
        try:
            st = os.stat(self._conf.rpc_socket)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_ctime_ns

    def stop(self, with_spdk=True):
        """Stop watching; with ``with_spdk`` also stop the SPDK this
        agent runs (never an adopted one). The agent's ``run`` leaves SPDK
        serving its guests unless told otherwise.
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        if with_spdk and not self._adopt:
            self.stop_spdk()

    def stop_spdk(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT, to the SPDK this
        agent started (now or in an earlier run, as its pid file says).
        """
        if self._pid is None:
            self._pid = read_live_pid(self._pid_file)
            self._started = (process_start_time(self._pid)
                             if self._pid is not None else None)
        if self._alive():
            LOG.info('Stopping SPDK vhost pid %d', self._pid)
            # SPDK is root's: the privsep daemon signals it, once it made
            # sure the pid is still that SPDK.
            privileged_spdk.stop_vhost(self._pid, self._started,
                                       self._conf.rpc_socket)
            if not wait_for_exit(self._pid, self._started, STOP_TIMEOUT):
                privileged_spdk.stop_vhost(self._pid, self._started,
                                           self._conf.rpc_socket, force=True)
                wait_for_exit(self._pid, self._started, STOP_TIMEOUT)
        remove_file(self._pid_file)
