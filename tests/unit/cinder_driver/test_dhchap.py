import base64
import os
import shutil
import stat
import tempfile
import zlib

from oslo_utils import strutils

from cinder_driver import dhchap
from tests import base


class RecordingClient:
    """Stands in for SPDK's keyring RPCs (the real ones are pinned by
    tests/spdk/test_contract.py).
    """

    def __init__(self):
        self.calls = []

    def call(self, method, params=None):
        self.calls.append((method, params))
        return []


class TestSecret(base.TestCase):
    def test_format_and_crc(self):
        secret = dhchap.make_secret()
        prefix, hash_id, b64, end = secret.split(':')
        self.assertEqual(('DHHC-1', '00', ''), (prefix, hash_id, end))
        raw = base64.b64decode(b64)
        key, crc = raw[:-4], raw[-4:]
        self.assertEqual(32, len(key))
        self.assertEqual(zlib.crc32(key).to_bytes(4, 'little'), crc)
        self.assertNotEqual(secret, dhchap.make_secret())


class TestHostKeys(base.TestCase):
    def setUp(self):
        super().setUp()
        top = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, top)
        self.dir = os.path.join(top, 'keys')
        self.client = RecordingClient()
        self.keys = dhchap.HostKeys(self.client, self.dir)
        self.keys.setup()

    def test_files_are_private_and_found_again(self):
        self.assertEqual(0o700, stat.S_IMODE(os.stat(self.dir).st_mode))
        name, secret = self.keys.create('nqn.s', 'nqn.h')
        path = os.path.join(self.dir, name)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))
        with open(path) as f:
            self.assertEqual(secret, f.read())  # no trailing newline
        self.assertEqual(name, self.keys.existing('nqn.s', 'nqn.h'))
        self.assertEqual(secret, self.keys.secret(name))
        self.keys.load(name)
        self.assertEqual(('keyring_file_add_key',
                          {'name': name, 'path': path}), self.client.calls[0])
        self.keys.remove(name)
        self.assertIsNone(self.keys.existing('nqn.s', 'nqn.h'))


class TestSecretStaysOutOfLogs(base.TestCase):
    def test_oslo_masking_hides_the_connection_info_field(self):
        # Cinder and Nova log connection_info through these two helpers.
        info = {'driver_volume_type': 'spdk_vhost',
                'data': {'dhchap_secret': dhchap.make_secret()}}
        secret = info['data']['dhchap_secret']
        self.assertNotIn(secret, str(strutils.mask_dict_password(info)))
        self.assertNotIn(secret, strutils.mask_password(str(info)))
