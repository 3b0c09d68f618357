"""Lvols against the in-process SPDK double (its RPCs are pinned by
tests/spdk/test_contract.py)."""

import json
import os

import fixtures

from cinder_driver import lvols
from spdk_common import naming
from tests import base
from tests.fixtures import spdk as spdk_fixtures


class TestLvols(base.TestCase):
    def setUp(self):
        super().setUp()
        self.target = self.useFixture(spdk_fixtures.FakeSPDKTarget())
        self.state = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                  'spdk', 'backend.json')
        self.lvols = self.make()
        self.target.calls.clear()

    def make(self):
        made = lvols.Lvols(self.target.client, state_file=self.state)
        made.load(self.target.client.call('bdev_get_bdevs'))
        return made

    def alias(self, name):
        return naming.lvol_alias(self.target.lvstore, name)

    def names(self):
        return sorted(naming.split_alias(lvol['alias'])[1] for lvol in
                      self.target.client.call('bdev_lvol_get_lvols'))

    def test_each_operation_is_one_rpc(self):
        self.lvols.create(self.target.lvstore, 'v', 1, thin=True)
        self.lvols.snapshot(self.alias('v'), 's')
        self.lvols.clone(self.alias('s'), 'c', 1)
        self.lvols.resize(self.alias('v'), 2)
        self.lvols.delete(self.alias('c'))
        for method in ('bdev_lvol_create', 'bdev_lvol_snapshot',
                       'bdev_lvol_clone', 'bdev_lvol_resize',
                       'bdev_lvol_delete'):
            self.assertEqual(1, self.target.calls[method], method)
        self.assertEqual(5, sum(self.target.calls.values()),
                         dict(self.target.calls))

    def test_provisioned_tracks_sizes_without_listing_bdevs(self):
        self.lvols.create(self.target.lvstore, 'a', 1, thin=True)
        self.lvols.create(self.target.lvstore, 'b', 2, thin=True)
        self.lvols.snapshot(self.alias('b'), 'snap')
        self.lvols.resize(self.alias('b'), 3)
        self.target.calls.clear()
        self.assertEqual({self.target.lvstore: 4 * 1024 ** 3},
                         self.lvols.provisioned())
        self.assertEqual({'bdev_lvol_get_lvols': 1},
                         dict(self.target.calls))

    def test_provisioned_learns_lvols_made_elsewhere(self):
        for i in range(3):
            self.target.client.call('bdev_lvol_create', {
                'lvs_name': self.target.lvstore, 'lvol_name': 'x%d' % i,
                'size_in_mib': 1024, 'thin_provision': True})
        self.assertEqual({self.target.lvstore: 3 * 1024 ** 3},
                         self.lvols.provisioned())
        for i in range(20):
            self.target.client.call('bdev_lvol_create', {
                'lvs_name': self.target.lvstore, 'lvol_name': 'y%d' % i,
                'size_in_mib': 1024, 'thin_provision': True})
        self.target.calls.clear()
        self.assertEqual({self.target.lvstore: 23 * 1024 ** 3},
                         self.lvols.provisioned())
        # Many unknown lvols: one listing, not one look-up each.
        self.assertEqual(1, self.target.calls['bdev_get_bdevs'])

    def test_deleted_snapshot_with_clones_goes_with_its_last_clone(self):
        self.lvols.create(self.target.lvstore, 'vol', 1, thin=True)
        self.lvols.snapshot(self.alias('vol'), 'snapshot-1')
        self.lvols.clone(self.alias('snapshot-1'), 'c1', 1)
        self.lvols.delete_snapshot(self.alias('snapshot-1'))
        self.assertIn('snapshot-1', self.names())
        with open(self.state) as f:
            self.assertEqual([self.alias('snapshot-1')],
                             json.load(f)['hidden_snapshots'])
        # A restarted driver finds it hidden again from the state file.
        self.lvols = self.make()
        self.lvols.delete(self.alias('c1'))
        self.assertNotIn('snapshot-1', self.names())
        self.assertEqual(['vol'], self.names())
        with open(self.state) as f:
            self.assertEqual([], json.load(f)['hidden_snapshots'])

    def test_clone_of_a_volume_uses_a_hidden_snapshot(self):
        self.lvols.create(self.target.lvstore, 'src', 1, thin=True)
        self.lvols.clone_volume(self.alias('src'), 'hidden-x', 'dst', 1)
        self.assertEqual(['dst', 'hidden-x', 'src'], self.names())
        self.lvols.delete(self.alias('src'))
        # One clone left: SPDK folds the hidden snapshot into it.
        self.assertEqual(['dst'], self.names())

    def test_chains_of_hidden_snapshots_unwind(self):
        self.lvols.create(self.target.lvstore, 'a', 1, thin=True)
        self.lvols.clone_volume(self.alias('a'), 'hidden-1', 'b', 1)
        self.lvols.clone_volume(self.alias('b'), 'hidden-2', 'c', 1)
        self.lvols.snapshot(self.alias('a'), 'snapshot-s')
        self.lvols.clone(self.alias('snapshot-s'), 'd', 1)
        self.lvols.delete_snapshot(self.alias('snapshot-s'))
        for name in ('c', 'd', 'b', 'a'):
            self.lvols.delete(self.alias(name))
        self.assertEqual([], self.names())

    def test_unreadable_state_file_hides_nothing(self):
        os.makedirs(os.path.dirname(self.state), exist_ok=True)
        with open(self.state, 'w') as f:
            f.write('{not json')
        self.lvols.create(self.target.lvstore, 'vol', 1, thin=True)
        self.lvols.snapshot(self.alias('vol'), 'snapshot-keep')
        self.make()
        self.assertIn('snapshot-keep', self.names())

    def test_ancestors(self):
        self.lvols.create(self.target.lvstore, 'v', 1, thin=True)
        self.lvols.snapshot(self.alias('v'), 's1')
        self.lvols.snapshot(self.alias('v'), 's2')
        self.assertEqual(['s2', 's1'], self.lvols.ancestors(self.alias('v')))
