"""Export recovery: a restarted storage target gets its exports back at
once, not at the next stats poll.

SPDK keeps no export across a restart. The driver's RPC connection ends
the moment ``nvmf_tgt`` exits, so a watcher thread waits on that (no
polling while the target runs), reconnects as soon as a target answers
again, and replays the desired exports (:meth:`NVMeoFExports.replay`,
pipelined). A target that restarted lacks the NVMe-oF transport, which
only the driver creates: that tells a restart from a mere reconnect.

A driver operation that comes while a replay is still due or running
first restores what it needs itself (the transport and its own volume's
export, hosts and QoS), then proceeds: it never meets a half-made export,
and it does not wait for the replay of every other export.
"""

import threading
import time

from oslo_log import log as logging

from spdk_common import exception as spdk_exc

LOG = logging.getLogger(__name__)

# While the target is away, how often to look for it again: quickly at
# first (a restart under systemd takes about a second), then every
# check interval.
FIRST_RETRY = 0.1


class ExportRecovery:
    def __init__(self, client, exports, socket_path, interval):
        self._client = client
        self._exports = exports
        self._socket_path = socket_path
        self._interval = interval
        # The connection whose target is known to hold every desired
        # export; None before the first check.
        self._current = None
        self._pending = False
        self._replay_lock = threading.Lock()
        self._stopping = threading.Event()
        # Set when the watcher should look now, not at its next interval.
        self._wake = threading.Event()
        self._thread = None
        self.replays = 0
        # Whether the target did not answer the watcher's last look.
        self.away = False

    def request_replay(self):
        """Exports were added to the desired set (ensure_export at start):
        the watcher replays them now.
        """
        self._pending = True
        self._wake.set()

    def check(self):
        """Replay when the target restarted or exports wait; return the
        NQNs restored (None when nothing needed a look).

        :raises SPDKException: when the target cannot be reached.
        """
        generation = self._client.connection_generation()
        if generation == self._current and not self._pending:
            return None
        with self._replay_lock:
            generation = self._client.connection_generation()
            if generation == self._current and not self._pending:
                return None
            restarted = not self._exports.transport_present()
            # A new connection after an earlier one: SPDK may have
            # restarted even with a transport there (another driver of the
            # same target, such as a storage node's own back end next to a
            # back end of storage nodes, may have made it first). The
            # replay sends only what is missing.
            reconnected = self._current is not None
            pending, self._pending = self._pending, False
            restored = []
            if restarted or pending or reconnected:
                started = time.monotonic()
                try:
                    restored, failed = self._exports.replay()
                except Exception:
                    self._pending = self._pending or pending
                    raise
                if failed:
                    # E.g. the connection dropped half-way: what is still
                    # missing is replayed by the next check.
                    self._pending = True
                self.replays += 1
                if restarted:
                    LOG.warning('SPDK at %(socket)s had restarted; restored '
                                '%(n)d export(s) with their hosts and QoS '
                                'limits in %(secs).2fs',
                                {'socket': self._socket_path,
                                 'n': len(restored),
                                 'secs': time.monotonic() - started})
            self._current = generation
            return restored

    def before_operation(self, volume_id):
        """What an operation on ``volume_id`` needs of a target that may
        have restarted: the transport and the volume's own export. Costs
        nothing while the target is known to be current.
        """
        if self._client.connection_generation() == self._current:
            return
        if not self._exports.transport_present():
            # A restarted target: the transport made here must not hide
            # the restart from the replay, which is due before it is made.
            self._pending = True
            self._exports.ensure_transport()
        self._exports.restore(volume_id)

    # -- the watcher thread --------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._watch,
                                        name='spdk-export-recovery',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _watch(self):
        retry = FIRST_RETRY
        while not self._stopping.is_set():
            # Cleared before the look: a request during it wakes the next.
            self._wake.clear()
            try:
                self.check()
            except spdk_exc.SPDKException as exc:
                self.away = True
                LOG.debug('Export recovery: the target at %(socket)s is '
                          'not back yet: %(err)s',
                          {'socket': self._socket_path, 'err': exc})
                self._stopping.wait(retry)
                retry = min(retry * 2, self._interval)
                continue
            except Exception:
                # The watcher must outlive whatever one replay met.
                LOG.exception('Export recovery failed; retrying')
                self._stopping.wait(self._interval)
                continue
            self.away = False
            retry = FIRST_RETRY
            # Wakes when the connection ends: the target exited.
            while not self._stopping.is_set():
                if self._client.wait_disconnected(self._interval,
                                                  wake=self._wake):
                    break
                if self._pending:
                    break
