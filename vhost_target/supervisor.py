"""Starts SPDK's vhost application and keeps it running.

The reactor mask, the per-NUMA-node hugepage memory and the socket
directory come from the plan. When SPDK dies the supervisor starts it again
(waiting 0.5 s, doubling up to ``restart_backoff_max`` while it keeps
dying soon after start) and calls ``on_ready`` so that the agent replays its
attachments; QEMU's vhost-user reconnect then finds the socket again. In
``adopt`` mode someone else runs SPDK and the supervisor only watches it.
"""

import grp
import json
import os
import signal
import subprocess
import threading
import time

from oslo_log import log as logging

from spdk_common import binaries
from spdk_common import exception as spdk_exc
from spdk_common import rpc

LOG = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
WATCH_INTERVAL = 1.0
# A process that ran this long is healthy again: the back-off starts over.
STABLE_AFTER = 30.0


class SupervisorError(spdk_exc.SPDKException):
    message = 'SPDK vhost: %(reason)s'


def startup_config_path(conf):
    return os.path.join(conf.state_dir, 'spdk-vhost-startup.json')


def vhost_command(binary, plan, conf):
    # --no-pci: the compute-side SPDK only speaks NVMe/TCP and vhost-user;
    # it must not take the host's PCI devices.
    cmd = [binary, '--no-pci', '-m', plan.cpumask, '-r', conf.rpc_socket,
           '-S', conf.socket_dir, '--json', startup_config_path(conf)]
    if plan.env_context:
        # DPDK's --socket-mem: hugepage memory on each NUMA node.
        cmd += ['--env-context', plan.env_context]
    else:
        cmd += ['-s', str(sum(plan.memory_mib_by_node.values()))]
    if plan.page_size_kib != 2048:
        cmd += ['--huge-dir', '/dev/hugepages1G']
    return cmd


class Supervisor:
    def __init__(self, conf, plan, on_ready, binary=None, log_path=None):
        self._conf = conf
        self._plan = plan
        self._on_ready = on_ready
        self._binary = binary
        self._log_path = log_path or os.path.join(conf.state_dir,
                                                  'spdk-vhost.log')
        self._proc = None
        self._stopping = threading.Event()
        self._thread = None
        # Completed recoveries: SPDK restarted and on_ready returned.
        self.restarts = 0

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    def _prepare_dirs(self):
        # The RPC socket is for root only; QEMU's group may reach the
        # vhost-user sockets but nobody else.
        rpc_dir = os.path.dirname(self._conf.rpc_socket)
        os.makedirs(rpc_dir, mode=0o750, exist_ok=True)
        os.chmod(rpc_dir, 0o750)
        os.makedirs(self._conf.socket_dir, mode=0o750, exist_ok=True)
        gid = grp.getgrnam(self._conf.socket_group).gr_gid
        os.chown(self._conf.socket_dir, -1, gid)
        os.chmod(self._conf.socket_dir, 0o750)

    def _spawn(self):
        binary = (self._binary or self._conf.spdk_vhost_binary
                  or binaries.find('vhost'))
        if not binary:
            raise SupervisorError(reason='the vhost binary was not found; '
                                  'set [spdk_vhost_target] spdk_vhost_binary '
                                  'or SPDK_BIN_DIR')
        for stale in (self._conf.rpc_socket,
                      self._conf.rpc_socket + '.lock'):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        # Buffer pools that fit in the hugepages Nova leaves to SPDK.
        os.makedirs(self._conf.state_dir, mode=0o700, exist_ok=True)
        with open(startup_config_path(self._conf), 'w') as f:
            json.dump(self._plan.startup_config, f)
        env = binaries.environment(binary)
        with open(self._log_path, 'ab') as log:
            self._proc = subprocess.Popen(
                vhost_command(binary, self._plan, self._conf),
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        LOG.info('Started SPDK vhost, pid %d', self._proc.pid)

    def _wait_for_rpc(self):
        client = rpc.SPDKClient(self._conf.rpc_socket, timeout=5.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    raise SupervisorError(
                        reason='exited with status %s during start-up (%s); '
                               'see %s' % (self._proc.returncode,
                                           self._logged_errors(),
                                           self._log_path))
                try:
                    client.call('spdk_get_version')
                    return
                except spdk_exc.SPDKUnavailable:
                    time.sleep(0.05)
        finally:
            client.close()
        raise SupervisorError(reason='no RPC answer at %s within %ds' % (
            self._conf.rpc_socket, STARTUP_TIMEOUT))

    def _logged_errors(self, last=3):
        """SPDK's last error lines: why it would not start."""
        try:
            with open(self._log_path, errors='replace') as log:
                errors = [line.strip() for line in log if '*ERROR*' in line]
        except OSError:
            errors = []
        return '; '.join(errors[-last:]) or 'no error logged'

    def start(self):
        """Start (or adopt) SPDK, replay, and watch it from a thread."""
        self._prepare_dirs()
        if not self._conf.adopt:
            self._spawn()
        self._wait_for_rpc()
        # Taken before the replay: a restart from here on is noticed.
        self._adopted_identity = self._socket_identity()
        self._on_ready()
        self._thread = threading.Thread(target=self._watch,
                                        name='spdk-supervisor', daemon=True)
        self._thread.start()

    def _watch(self):
        if self._conf.adopt:
            return self._watch_adopted()
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            status = self._proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_AFTER:
                backoff = 0.5
            LOG.error('SPDK vhost (pid %(pid)d) exited with %(status)s; '
                      'restarting in %(delay).1fs',
                      {'pid': self._proc.pid, 'status': status,
                       'delay': backoff})
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self._conf.restart_backoff_max)
            try:
                self._spawn()
                self._wait_for_rpc()
                self._on_ready()
                self.restarts += 1
            except spdk_exc.SPDKException as exc:
                LOG.error('Restarting SPDK vhost failed: %s', exc)

    def _socket_identity(self):
        try:
            st = os.stat(self._conf.rpc_socket)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_ctime_ns

    def _watch_adopted(self):
        """Notice an adopted SPDK that restarted, and replay into it.

        A restarted SPDK makes its RPC socket anew, so the socket's identity
        tells a restart even when it was quicker than the poll.
        """
        client = rpc.SPDKClient(self._conf.rpc_socket, timeout=5.0)
        known = self._adopted_identity
        while not self._stopping.wait(WATCH_INTERVAL):
            current = self._socket_identity()
            if current is None or current == known:
                continue
            try:
                client.close()
                client.call('spdk_get_version')
            except spdk_exc.SPDKUnavailable:
                continue   # not serving yet: look again
            LOG.warning('Adopted SPDK vhost has restarted; replaying')
            known = current
            self._on_ready()
            self.restarts += 1
        client.close()

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; adopted SPDK stays."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
