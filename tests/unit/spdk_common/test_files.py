"""write_atomically: the mode from the start, no symlink followed."""

import os
import stat

import fixtures

from spdk_common import files
from tests import base


class TestWriteAtomically(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'secret')

    def mode(self, path):
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_writes_then_replaces_with_the_mode(self):
        files.write_atomically(self.path, 'one', 0o600)
        files.write_atomically(self.path, 'two', 0o640)
        with open(self.path) as f:
            self.assertEqual('two', f.read())
        self.assertEqual(0o640, self.mode(self.path))
        self.assertEqual(['secret'], os.listdir(self.dir))

    def test_a_leftover_temporary_file_does_not_lend_its_mode(self):
        temp = self.path + files.TEMP_SUFFIX
        with open(temp, 'w') as f:
            f.write('half')
        os.chmod(temp, 0o666)
        files.write_atomically(self.path, 'whole', 0o600)
        self.assertEqual(0o600, self.mode(self.path))

    def test_a_symlink_at_the_temporary_name_is_not_followed(self):
        elsewhere = os.path.join(self.dir, 'elsewhere')
        with open(elsewhere, 'w') as f:
            f.write('keep')
        os.symlink(elsewhere, self.path + files.TEMP_SUFFIX)
        self.assertRaises(OSError, files.write_atomically, self.path, 'x',
                          0o600)
        with open(elsewhere) as f:
            self.assertEqual('keep', f.read())
        self.assertFalse(os.path.exists(self.path))
