"""What the Nova hooks rely on from spdk-vhost-target, asserted against
both the real agent (SPDK tier) and the stand-in the functional tier uses
where SPDK is absent (``tests.fixtures.qsd.AgentStandIn``)."""

import os
import stat


class AgentContract:
    """Subclasses set ``self.agent`` and implement ``served_volume()``,
    returning (volume_id, connection_info) of a volume the agent can
    attach.
    """

    def served_volume(self):
        raise NotImplementedError

    def test_attach_gives_one_socket_per_volume_and_is_idempotent(self):
        volume_id, info = self.served_volume()
        path = self.agent.attach_volume(volume_id, info, numa_nodes=[0])
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        # Hard reboot, power on and resize connect again.
        self.assertEqual(path, self.agent.attach_volume(volume_id, info,
                                                        numa_nodes=[0]))
        self.assertIn(volume_id, [a['volume_id'] for a in
                                  self.agent.get_status()['attachments']])
        self.agent.detach_volume(volume_id)

    def test_status_names_version_host_nqn_and_socket_dir(self):
        status = self.agent.get_status()
        self.assertEqual('1.0', status['version'])
        self.assertTrue(status['host_nqn'].startswith('nqn.'))
        # Live migration keeps a disk's socket path: the Nova hooks compare
        # this directory on both hosts.
        volume_id, info = self.served_volume()
        path = self.agent.attach_volume(volume_id, info, numa_nodes=[0])
        self.assertEqual(status['socket_dir'], os.path.dirname(path))
        self.agent.detach_volume(volume_id)

    def test_extend_returns_the_size_in_bytes(self):
        volume_id, info = self.served_volume()
        self.agent.attach_volume(volume_id, info, numa_nodes=[0])
        size = self.agent.extend_volume(volume_id)
        self.assertIsInstance(size, int)
        self.assertGreater(size, 0)
        self.agent.detach_volume(volume_id)

    def test_detach_is_idempotent(self):
        volume_id, info = self.served_volume()
        self.agent.attach_volume(volume_id, info, numa_nodes=[0])
        self.agent.detach_volume(volume_id)
        self.agent.detach_volume(volume_id)
        self.assertNotIn(volume_id, [a['volume_id'] for a in
                                     self.agent.get_status()['attachments']])
