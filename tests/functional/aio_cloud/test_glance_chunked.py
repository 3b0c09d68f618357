"""glance-api's uWSGI options take the chunked uploads glanceclient sends
(1 MiB chunks of a body of unknown size: cinder's upload-to-image, nova's
snapshots). A real uWSGI (the cloud venv's) serves a WSGI app that reads
the body as glance does, with ``uwsgi.chunked_read()``; the same options
without the cloud's chunked-input ones fail as glance did, with HTTP 500.
"""

import hashlib
import http.client
import os
import socket
import subprocess
import time

import fixtures

from tests import base
from tools.aio_cloud import configs
from tools.aio_cloud import layout as layout_mod

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
CLOUD_VENV = os.path.join(REPO, '.cloud-venv')

APP = '''
import hashlib

import uwsgi


def application(environ, start_response):
    digest = hashlib.md5()
    try:
        while True:
            chunk = uwsgi.chunked_read()
            if not chunk:
                break
            digest.update(chunk)
    except IOError as exc:
        start_response('500 Internal Server Error', [])
        return [str(exc).encode()]
    start_response('200 OK', [])
    return [digest.hexdigest().encode()]
'''


def _free_port():
    with socket.socket() as s:
        s.bind((layout_mod.HOST, 0))
        return s.getsockname()[1]


class TestGlanceChunkedUploads(base.TestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(os.path.join(CLOUD_VENV, 'bin', 'uwsgi')):
            self.skipTest('needs the cloud venv\'s uWSGI (tools/cloud '
                          'status builds .cloud-venv)')
        self.useFixture(fixtures.Timeout(120, gentle=True))
        self.dir = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(self.dir, 'chunked_app.py'), 'w') as f:
            f.write(APP)

    def _serve(self, chunked_input):
        layout = layout_mod.Layout(self.dir)
        os.makedirs(layout.run(), exist_ok=True)
        port = _free_port()
        self.useFixture(fixtures.MockPatchObject(
            configs, 'PORTS', {'glance-api': port}))
        sections = configs.uwsgi(layout, CLOUD_VENV, 'glance-api',
                                 'chunked_app:application',
                                 chunked_input=chunked_input)
        sections['uwsgi']['pythonpath'] = self.dir
        ini = os.path.join(self.dir, 'uwsgi-%s.ini' % chunked_input)
        configs.write_ini(ini, sections)
        log = open(os.path.join(self.dir, 'uwsgi.log'), 'ab')
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [os.path.join(CLOUD_VENV, 'bin', 'uwsgi'), '--ini', ini],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex((layout_mod.HOST, port)) == 0:
                    return port
            self.assertIsNone(proc.poll(), open(log.name).read())
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)

    def _upload(self, port, chunks):
        conn = http.client.HTTPConnection(layout_mod.HOST, port, timeout=60)
        self.addCleanup(conn.close)
        # As glanceclient does: a generator of 1 MiB reads, so chunked.
        conn.request('PUT', '/v2/images/x/file', body=iter(chunks),
                     encode_chunked=True,
                     headers={'Transfer-Encoding': 'chunked'})
        response = conn.getresponse()
        try:
            body = response.read().decode()
        except ConnectionResetError:  # it did not read the whole body
            body = ''
        return response.status, body

    def test_one_mib_chunks(self):
        chunks = [bytes([i]) * (1 << 20) for i in range(8)]
        expected = hashlib.md5(b''.join(chunks)).hexdigest()
        port = self._serve(chunked_input=True)
        self.assertEqual((200, expected), self._upload(port, chunks))

    def test_what_failed_without_the_options(self):
        port = self._serve(chunked_input=False)
        status, body = self._upload(port, [b'x' * (1 << 20)])
        self.assertEqual(500, status, body)
        if body:
            self.assertIn('unable to receive chunked part', body)
