"""The functional tier's stand-in for the agent keeps the agent's
contract (the SPDK tier runs the same tests against the real agent)."""

import uuid

import fixtures

from tests import base
from tests.fixtures import qsd
from tests.functional.vhost_target import agent_contract


class TestAgentStandInContract(agent_contract.AgentContract, base.TestCase):
    def setUp(self):
        super().setUp()
        self.sockets = self.useFixture(fixtures.TempDir()).path
        self.agent = qsd.AgentStandIn(self.sockets)

    def served_volume(self):
        volume_id = str(uuid.uuid4())
        self.agent.serve(volume_id, self.useFixture(qsd.VhostUserBlkExport(
            self.sockets, name=volume_id, group='root')))
        return volume_id, {'driver_volume_type': 'spdk_vhost',
                           'data': {'vol_uuid': volume_id}}
