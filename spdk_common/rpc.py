"""The SPDK JSON-RPC client used by every spdk-openstack component.

SPDK serves JSON-RPC 2.0 on a unix socket. Its own Python package
(``spdk`` on PyPI) sends one request and reads one reply under no lock,
keeps neither SPDK's error code nor the request id, and has no way to
recover a connection after a timeout; callers here are multi-threaded
services, so this small client closes those gaps:

* one connection, shared by all threads; many requests may be in flight on
  it at once and each reply is handed to the caller whose ``id`` it carries
  (SPDK completes asynchronous RPCs out of order);
* a wall-clock timeout per call; after a timeout or a broken socket the
  connection is dropped and the next call opens a new one;
* SPDK's error codes are kept and mapped to typed exceptions
  (:mod:`spdk_common.exception`);
* the connection's end is visible (``connection_generation``,
  ``wait_disconnected``): SPDK exiting closes it at once, which is how a
  restart of the target is noticed without polling.

Pipelining matters: the SPDK application reads its RPC socket on a timer
(every 4 ms), so concurrent callers that share one connection get their
requests served in the same poll instead of queueing behind each other.
"""

import itertools
import json
import socket
import threading
import time

from oslo_log import log as logging

from spdk_common import exception

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
_RECV_CHUNK = 1 << 20


# How often a wait on several events looks at them (threading has no
# select over events; a look costs nothing but a lock).
_WAIT_SLICE = 0.05


def wait_any(events, timeout):
    """Wait until one of ``events`` (None entries ignored) is set, at most
    ``timeout`` seconds; True when one is.
    """
    events = [event for event in events if event is not None]
    deadline = time.monotonic() + timeout
    while not any(event.is_set() for event in events):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        events[0].wait(min(left, _WAIT_SLICE))
    return True


class _PendingCall:
    __slots__ = ('done', 'response', 'failure')

    def __init__(self):
        self.done = threading.Event()
        self.response = None
        self.failure = None


class _Connection:
    """One socket and the reader thread that dispatches its replies."""

    def __init__(self, client, sock):
        self._client = client
        self.sock = sock
        self.pending = {}
        self.closed = False
        self.gone = threading.Event()
        self._reader = threading.Thread(
            target=self._read_loop, name='spdk-rpc-reader', daemon=True)
        self._reader.start()

    def _read_loop(self):
        decoder = json.JSONDecoder()
        buf = b''
        reason = 'connection closed by SPDK'
        try:
            while True:
                chunk = self.sock.recv(_RECV_CHUNK)
                if not chunk:
                    break
                buf += chunk
                # A reply is complete only when it ends an object; skip the
                # decode attempt for chunks that stop mid-reply (large
                # listings arrive in many chunks).
                if not buf.rstrip().endswith(b'}'):
                    continue
                text = buf.decode('utf-8')
                while True:
                    text = text.lstrip()
                    if not text:
                        break
                    try:
                        reply, end = decoder.raw_decode(text)
                    except ValueError:
                        break
                    text = text[end:]
                    self._dispatch(reply)
                buf = text.encode('utf-8')
        except (OSError, EOFError) as exc:
            # EOFError: eventlet's green socket, closed under a reader.
            reason = str(exc) or 'connection closed'
        except ValueError as exc:
            reason = 'malformed reply from SPDK: %s' % exc
        finally:
            self._client._connection_lost(self, reason)
            self.sock.close()

    def _dispatch(self, reply):
        with self._client._lock:
            call = self.pending.pop(reply.get('id'), None)
        if call is None:
            LOG.warning('Dropping SPDK reply to unknown request id %s',
                        reply.get('id'))
            return
        call.response = reply
        call.done.set()

    def close(self):
        """Stop the connection; the reader closes the socket as it exits.

        Closing the descriptor under a reader that still waits on it would
        leave an eventlet hub watching a number the next socket may reuse
        ("Second simultaneous read"); shutdown() wakes the reader instead.
        """
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SPDKClient:
    """Thread-safe JSON-RPC client for one SPDK application."""

    def __init__(self, socket_path, timeout=DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._conn = None
        self.calls_sent = 0
        # Connections opened so far: a new one after a lost one may reach
        # a restarted SPDK.
        self.connections = 0

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise exception.SPDKUnavailable(socket=self.socket_path,
                                            reason=exc.strerror or str(exc))
        self.connections += 1
        return _Connection(self, sock)

    def connection_generation(self):
        """The number of the connection now open, opening one if none is:
        it changes when the connection was lost and made anew.

        :raises SPDKUnavailable: when SPDK cannot be reached.
        """
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            return self.connections

    def wait_disconnected(self, timeout, wake=None):
        """Wait until the open connection ends, at most ``timeout``
        seconds or until ``wake`` (an Event) is set; True when none is
        open (any more).
        """
        with self._lock:
            conn = self._conn
        if conn is None:
            return True
        wait_any((conn.gone, wake), timeout)
        return conn.gone.is_set()

    def _connection_lost(self, conn, reason):
        with self._lock:
            if self._conn is conn:
                self._conn = None
            pending, conn.pending = conn.pending, {}
        conn.gone.set()
        if not conn.closed:
            conn.close()
        for call in pending.values():
            call.failure = exception.SPDKUnavailable(
                socket=self.socket_path, reason=reason)
            call.done.set()

    def call(self, method, params=None, timeout=None):
        """Send one RPC and return its ``result``.

        Raises :class:`SPDKRPCError` (the subclass its code maps to) when
        SPDK answers with an error and :class:`SPDKUnavailable` when it
        cannot be reached or does not answer in time.
        """
        timeout = self.timeout if timeout is None else timeout
        request = {'jsonrpc': '2.0', 'method': method, 'id': None}
        if params:
            request['params'] = params
        call = _PendingCall()
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            request['id'] = next(self._ids)
            conn.pending[request['id']] = call
            try:
                conn.sock.sendall(json.dumps(request).encode('utf-8'))
            except OSError as exc:
                conn.pending.pop(request['id'], None)
                self._conn = None
                conn.close()
                raise exception.SPDKUnavailable(socket=self.socket_path,
                                                reason=str(exc))
            self.calls_sent += 1
        if not call.done.wait(timeout):
            LOG.warning('SPDK %s timed out after %ss; reconnecting',
                        method, timeout)
            self._connection_lost(conn, 'timed out')
            raise exception.SPDKTimeout(socket=self.socket_path,
                                        method=method, timeout=timeout)
        if call.failure is not None:
            raise call.failure
        if 'error' in call.response:
            raise exception.from_rpc_error(method, call.response['error'])
        return call.response.get('result')

    def close(self):
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._connection_lost(conn, 'client closed')
