"""The guest's kernel modules come with what they need, in load order."""

import os

from tests import base
from tools.aio_cloud import guest_image


class TestModulePaths(base.TestCase):

    def setUp(self):
        super().setUp()
        self.release = guest_image.kernel_release()
        if self.release is None:
            self.skipTest(guest_image.MISSING_MESSAGE)

    def _names(self, modules):
        return [os.path.basename(p).split('.ko')[0].replace('-', '_')
                for p in guest_image.module_paths(self.release, modules)]

    def test_needs_first_and_once(self):
        names = self._names(guest_image.VIRTIO_BLK_MODULES +
                            guest_image.CONFIG_DRIVE_MODULES)
        self.assertEqual(len(names), len(set(names)))
        for before, after in (('virtio_ring', 'virtio_blk'),
                              ('virtio', 'virtio_pci'),
                              ('cdrom', 'sr_mod'), ('scsi_mod', 'sr_mod'),
                              ('libata', 'ata_piix'), ('cdrom', 'isofs')):
            if before in names:
                self.assertLess(names.index(before), names.index(after))
        self.assertIn('virtio_blk', names)

    def test_unknown_module_is_named(self):
        exc = self.assertRaises(RuntimeError, guest_image.module_paths,
                                self.release, ['no_such_module'])
        self.assertIn('no_such_module', str(exc))
