import json
import os
import socket
import tempfile
import threading
import time

from spdk_common import exception
from spdk_common import rpc
from tests import base


class ScriptedServer:
    """A unix-socket peer that answers as a test tells it to.

    ``handler(request)`` returns (delay seconds, reply dict or None); the
    replies of requests read together are written together, in the order
    of their delays, as SPDK writes completions of async RPCs.
    """

    def __init__(self, path, handler):
        self.path = path
        self.handler = handler
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        decoder = json.JSONDecoder()
        buf = ''
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data.decode()
            requests = []
            while buf.strip():
                try:
                    req, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                requests.append(req)
            for req in requests:
                delay, reply = self.handler(req)
                if reply is None:
                    continue
                threading.Timer(delay, self._send, (conn, reply)).start()

    @staticmethod
    def _send(conn, reply):
        try:
            conn.sendall(json.dumps(reply).encode())
        except OSError:
            pass

    def close(self):
        self._stop = True
        self.sock.close()


class TestSPDKClient(base.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, self.tmp)
        self.path = os.path.join(self.tmp, 'spdk.sock')
        self.addCleanup(lambda: os.path.exists(self.path)
                        and os.unlink(self.path))

    def serve(self, handler):
        server = ScriptedServer(self.path, handler)
        self.addCleanup(server.close)
        client = rpc.SPDKClient(self.path, timeout=2)
        self.addCleanup(client.close)
        return server, client

    def test_result_returned(self):
        _server, client = self.serve(lambda r: (0, {
            'jsonrpc': '2.0', 'id': r['id'], 'result': r['params']['x']}))
        self.assertEqual(42, client.call('echo', {'x': 42}))

    def test_error_codes_become_typed_exceptions(self):
        codes = {'a': -19, 'b': -17, 'c': -28, 'd': -16, 'e': -32602,
                 'f': -32601, 'g': -5}
        _server, client = self.serve(lambda r: (0, {
            'jsonrpc': '2.0', 'id': r['id'],
            'error': {'code': codes[r['method']], 'message': 'msg'}}))
        expected = {'a': exception.SPDKNotFound, 'b': exception.SPDKExists,
                    'c': exception.SPDKNoSpace, 'd': exception.SPDKBusy,
                    'e': exception.SPDKInvalidParams,
                    'f': exception.SPDKMethodNotFound,
                    'g': exception.SPDKRPCError}
        for method, cls in expected.items():
            exc = self.assertRaises(cls, client.call, method)
            self.assertEqual(codes[method], exc.code)
            self.assertIn(method, str(exc))

    def test_concurrent_calls_get_their_own_replies_out_of_order(self):
        # Later requests finish first, as async SPDK RPCs may.
        def handler(req):
            n = req['params']['n']
            return (0.2 - n * 0.01, {'jsonrpc': '2.0', 'id': req['id'],
                                     'result': n})
        server, client = self.serve(handler)
        results = {}

        def worker(n):
            results[n] = client.call('work', {'n': n})
        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({n: n for n in range(16)}, results)
        self.assertEqual(1, server.connections)

    def test_large_reply_in_many_chunks(self):
        big = [{'name': 'lvol%d' % i, 'text': 'x' * 500} for i in range(3000)]
        _server, client = self.serve(lambda r: (0, {
            'jsonrpc': '2.0', 'id': r['id'], 'result': big}))
        self.assertEqual(big, client.call('bdev_get_bdevs'))

    def test_timeout_drops_connection_and_next_call_reconnects(self):
        def handler(req):
            if req['method'] == 'hang':
                return 0, None
            return 0, {'jsonrpc': '2.0', 'id': req['id'], 'result': True}
        server, client = self.serve(handler)
        start = time.monotonic()
        self.assertRaises(exception.SPDKTimeout, client.call, 'hang',
                          timeout=0.3)
        self.assertLess(time.monotonic() - start, 2)
        self.assertTrue(client.call('ok'))
        self.assertEqual(2, server.connections)

    def test_missing_socket_is_unavailable_with_path(self):
        client = rpc.SPDKClient(self.path)
        exc = self.assertRaises(exception.SPDKUnavailable, client.call, 'x')
        self.assertIn(self.path, str(exc))

    def test_peer_closing_fails_pending_calls_then_reconnects(self):
        state = {'n': 0}

        def handler(req):
            state['n'] += 1
            if state['n'] == 1:
                raise SystemExit  # kills the serving thread: socket closes
            return 0, {'jsonrpc': '2.0', 'id': req['id'], 'result': 'ok'}

        class Closing(ScriptedServer):
            def _serve(self, conn):
                try:
                    super()._serve(conn)
                except SystemExit:
                    conn.close()
        server = Closing(self.path, handler)
        self.addCleanup(server.close)
        client = rpc.SPDKClient(self.path, timeout=2)
        self.addCleanup(client.close)
        self.assertRaises(exception.SPDKUnavailable, client.call, 'first')
        self.assertEqual('ok', client.call('second'))

    def test_generation_changes_only_with_a_new_connection(self):
        server, client = self.serve(lambda r: (0, {
            'jsonrpc': '2.0', 'id': r['id'], 'result': 'ok'}))
        first = client.connection_generation()
        client.call('x')
        self.assertEqual(first, client.connection_generation())
        self.assertEqual(1, server.connections)

    def test_wait_disconnected_wakes_when_the_peer_exits(self):
        accepted = []

        class Holding(ScriptedServer):
            def _serve(self, conn):
                accepted.append(conn)
        server = Holding(self.path, None)
        self.addCleanup(server.close)
        client = rpc.SPDKClient(self.path, timeout=2)
        self.addCleanup(client.close)
        generation = client.connection_generation()
        self.assertFalse(client.wait_disconnected(0.05))
        waker = threading.Timer(0.1, lambda: accepted[0].close())
        waker.start()
        self.assertTrue(client.wait_disconnected(5))
        self.assertTrue(client.wait_disconnected(0))   # none open now
        self.assertEqual(generation + 1, client.connection_generation())

    def test_generation_of_an_unreachable_spdk_is_unavailable(self):
        client = rpc.SPDKClient(self.path)
        self.assertRaises(exception.SPDKUnavailable,
                          client.connection_generation)


class TestErrorMapping(base.TestCase):
    def test_errno_text_under_generic_codes(self):
        # As real SPDK v25.09 answers (pinned in tests/spdk/test_contract.py)
        cases = [
            (-32602, 'No space left on device', exception.SPDKNoSpace),
            (-32602, 'File exists', exception.SPDKExists),
            (-32602, 'Failed to configure rate limit: Resource temporarily '
                     'unavailable', exception.SPDKBusy),
            (-32603, 'Transport type \'TCP\' already exists',
             exception.SPDKRPCError),
            (-32602, 'Invalid parameters', exception.SPDKInvalidParams),
            (-19, 'No such device', exception.SPDKNotFound),
        ]
        for code, text, cls in cases:
            exc = exception.from_rpc_error('m', {'code': code,
                                                 'message': text})
            self.assertIs(cls, type(exc), text)
            self.assertEqual(code, exc.code)
