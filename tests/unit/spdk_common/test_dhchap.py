import base64
import os
import shutil
import stat
import tempfile
import zlib

from oslo_utils import strutils

from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from tests import base


class RecordingClient:
    """Stands in for SPDK's keyring RPCs (the real ones are pinned by
    tests/spdk/test_contract.py).
    """

    def __init__(self):
        self.calls = []
        self.fail = None

    def call(self, method, params=None):
        self.calls.append((method, params))
        if self.fail is not None:
            raise self.fail
        return True


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


class TestKeyFiles(base.TestCase):
    def setUp(self):
        super().setUp()
        top = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, top)
        self.dir = os.path.join(top, 'keys')
        self.client = RecordingClient()
        self.keys = dhchap.KeyFiles(self.client, self.dir)
        self.keys.setup()

    def test_files_are_private_and_found_again(self):
        self.assertEqual(0o700, stat.S_IMODE(os.stat(self.dir).st_mode))
        secret = dhchap.make_secret()
        self.keys.write('dhchap-k', secret)
        path = os.path.join(self.dir, 'dhchap-k')
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))
        with open(path) as f:
            self.assertEqual(secret, f.read())  # no trailing newline
        self.assertTrue(self.keys.exists('dhchap-k'))
        self.assertEqual(secret, self.keys.secret('dhchap-k'))
        self.assertTrue(self.keys.load('dhchap-k'))
        self.assertEqual(('keyring_file_add_key',
                          {'name': 'dhchap-k', 'path': path}),
                         self.client.calls[0])
        self.keys.remove('dhchap-k')
        self.assertFalse(self.keys.exists('dhchap-k'))

    def test_a_key_spdk_already_holds_is_not_loaded_again(self):
        self.client.fail = spdk_exc.SPDKExists(
            method='keyring_file_add_key', code=-17, error='File exists')
        self.keys.write('dhchap-k', dhchap.make_secret())
        self.assertFalse(self.keys.load('dhchap-k'))

    def test_removing_what_is_gone_is_quiet(self):
        self.client.fail = spdk_exc.SPDKNotFound(
            method='keyring_file_remove_key', code=-2,
            error='No such file or directory')
        self.keys.remove('dhchap-never')
        with open(os.path.join(self.dir, 'dhchap-k.tmp'), 'w') as f:
            f.write('half')
        self.keys.remove('dhchap-k')
        self.assertEqual([], os.listdir(self.dir))


class TestSecretStaysOutOfLogs(base.TestCase):
    def test_oslo_masking_hides_the_connection_info_field(self):
        # Cinder and Nova log connection_info through these two helpers.
        info = {'driver_volume_type': 'spdk_vhost',
                'data': {'dhchap_secret': dhchap.make_secret()}}
        secret = info['data']['dhchap_secret']
        self.assertNotIn(secret, str(strutils.mask_dict_password(info)))
        self.assertNotIn(secret, strutils.mask_password(str(info)))
