import os
import stat

import fixtures

from spdk_common import binaries
from tests import base


class TestFind(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'spdk_common.binaries.CONVENTIONAL_DIRS', ()))
        self.useFixture(fixtures.EnvironmentVariable('PATH', '/nonexistent'))

    def make(self, directory, name):
        path = os.path.join(directory, name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n')
        os.chmod(path, stat.S_IRWXU)
        return path

    def test_spdk_bin_dir_first(self):
        path = self.make(self.dir, 'nvmf_tgt')
        self.useFixture(fixtures.EnvironmentVariable('SPDK_BIN_DIR',
                                                     self.dir))
        self.assertEqual(path, binaries.find('nvmf_tgt'))

    def test_missing_message_names_what_is_missing(self):
        self.useFixture(fixtures.EnvironmentVariable('SPDK_BIN_DIR',
                                                     self.dir))
        self.make(self.dir, 'nvmf_tgt')
        message = binaries.missing_message()
        self.assertIn('SPDK vhost not found', message)
        self.assertIn('SPDK_BIN_DIR', message)
        self.make(self.dir, 'vhost')
        self.assertIsNone(binaries.missing_message())

    def test_path_then_conventional(self):
        self.useFixture(fixtures.EnvironmentVariable('SPDK_BIN_DIR', None))
        self.assertIsNone(binaries.find('nvmf_tgt'))
        path = self.make(self.dir, 'vhost')
        self.useFixture(fixtures.MonkeyPatch(
            'spdk_common.binaries.CONVENTIONAL_DIRS', (self.dir,)))
        self.assertEqual(path, binaries.find('vhost'))
        self.useFixture(fixtures.EnvironmentVariable('PATH', self.dir))
        self.assertEqual(path, binaries.find('vhost'))
