"""Base classes of the plugin's tests: clients, resources with clean-ups,
waiters, and the skips that say what the cloud lacks.

Only tempest's stable interfaces: ``tempest.test``, ``tempest.config``
and ``tempest.lib`` (service clients through ``os_primary``/``os_admin``).
"""

import base64
import json
import time

from tempest import config
from tempest.lib.common import api_microversion_fixture
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import exceptions
from tempest import test

from tempest_tests.tests import guest

CONF = config.CONF

# Cinder's revert-to-snapshot action.
REVERT_MICROVERSION = '3.40'
# Extending an attached (in-use) volume.
EXTEND_ATTACHED_MICROVERSION = '3.42'


class SPDKBaseTest(test.BaseTestCase):
    credentials = ['primary', 'admin']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.cinder:
            raise cls.skipException('Cinder is not available')
        if not CONF.service_available.spdk_openstack:
            raise cls.skipException(
                'The cloud has no SPDK back end ([service_available] '
                'spdk_openstack = False)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        volume = cls.os_primary.volume_v3
        cls.volumes_client = volume.VolumesClient()
        cls.snapshots_client = volume.SnapshotsClient()
        admin = cls.os_admin.volume_v3
        cls.admin_volumes_client = admin.VolumesClient()
        cls.admin_types_client = admin.TypesClient()
        cls.admin_qos_client = admin.QosSpecsClient()
        cls.admin_pools_client = admin.SchedulerStatsClient()

    @property
    def timeout(self):
        return CONF.volume.build_timeout

    def _wait(self, show, key, resource_id, status):
        deadline = time.monotonic() + self.timeout
        while True:
            body = show(resource_id)[key]
            if body['status'] == status:
                return body
            if body['status'].startswith('error'):
                raise exceptions.TempestException(
                    '%s %s went to %s waiting for %s'
                    % (key, resource_id, body['status'], status))
            if time.monotonic() >= deadline:
                raise exceptions.TimeoutException(
                    '%s %s is %s after %ss, not %s'
                    % (key, resource_id, body['status'], self.timeout,
                       status))
            time.sleep(CONF.volume.build_interval)

    def wait_volume(self, volume_id, status='available'):
        return self._wait(self.volumes_client.show_volume, 'volume',
                          volume_id, status)

    def wait_snapshot(self, snapshot_id, status='available'):
        return self._wait(self.snapshots_client.show_snapshot, 'snapshot',
                          snapshot_id, status)

    def create_volume(self, volume_type=None, size=None, **kwargs):
        """An available SPDK volume, deleted after the test."""
        volume = self.volumes_client.create_volume(
            size=size or CONF.volume.volume_size,
            volume_type=volume_type or CONF.spdk_openstack.volume_type,
            name=data_utils.rand_name(self.__class__.__name__ + '-volume'),
            **kwargs)['volume']
        self.addCleanup(self._delete, self.volumes_client.delete_volume,
                        self.volumes_client, volume['id'])
        return self.wait_volume(volume['id'])

    def create_snapshot(self, volume_id):
        snapshot = self.snapshots_client.create_snapshot(
            volume_id=volume_id,
            name=data_utils.rand_name(self.__class__.__name__ + '-snap'),
        )['snapshot']
        self.addCleanup(self._delete, self.snapshots_client.delete_snapshot,
                        self.snapshots_client, snapshot['id'])
        return self.wait_snapshot(snapshot['id'])

    @staticmethod
    def _delete(delete, client, resource_id):
        test_utils.call_and_ignore_notfound_exc(delete, resource_id)
        client.wait_for_resource_deletion(resource_id)

    def extend_volume(self, volume_id, new_size):
        self.useFixture(api_microversion_fixture.APIMicroversionFixture(
            volume_microversion=EXTEND_ATTACHED_MICROVERSION))
        self.volumes_client.extend_volume(volume_id, new_size=new_size)

    def revert_volume(self, volume_id, snapshot_id):
        # tempest.lib has no revert call; the action is one POST.
        self.useFixture(api_microversion_fixture.APIMicroversionFixture(
            volume_microversion=REVERT_MICROVERSION))
        resp, _ = self.volumes_client.post(
            'volumes/%s/action' % volume_id,
            json.dumps({'revert': {'snapshot_id': snapshot_id}}))
        self.volumes_client.expected_success(202, resp.status)

    def spdk_pools(self):
        pools = self.admin_pools_client.list_pools(detail=True)['pools']
        backend = CONF.spdk_openstack.backend_name
        return [p for p in pools
                if p['capabilities'].get('volume_backend_name') == backend]


class SPDKScenarioTest(SPDKBaseTest):
    """Servers on hugepage flavors with SPDK volumes; guest checks over SSH
    when validation is enabled, from the console log otherwise.
    """

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.nova:
            raise cls.skipException('Nova is not available')
        if not CONF.spdk_openstack.hugepage_flavor_ref:
            raise cls.skipException(
                'No hugepage flavor ([spdk_openstack] hugepage_flavor_ref)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.servers_client = cls.os_primary.compute.ServersClient()

    def wait_server(self, server_id, status='ACTIVE'):
        return self._wait(self.servers_client.show_server, 'server',
                          server_id, status)

    def create_server(self, flavor=None, **kwargs):
        """An ACTIVE server on the hugepage flavor running the console
        agent, deleted after the test.
        """
        params = dict(name=data_utils.rand_name(self.__class__.__name__),
                      flavorRef=flavor or
                      CONF.spdk_openstack.hugepage_flavor_ref,
                      user_data=_b64(guest.CONSOLE_AGENT))
        if 'block_device_mapping_v2' not in kwargs:
            params['imageRef'] = CONF.compute.image_ref
        params.update(kwargs)
        server = self.servers_client.create_server(**params)['server']
        self.addCleanup(self._delete_server, server['id'])
        return self.wait_server(server['id'])

    def _delete_server(self, server_id):
        # tempest.lib's servers client has no is_resource_deleted.
        test_utils.call_and_ignore_notfound_exc(
            self.servers_client.delete_server, server_id)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.servers_client.show_server(server_id)
            except exceptions.NotFound:
                return
            if time.monotonic() >= deadline:
                raise exceptions.TimeoutException(
                    'server %s not deleted after %ss'
                    % (server_id, self.timeout))
            time.sleep(CONF.compute.build_interval)

    def guest(self, server):
        if CONF.validation.run_validation:
            return guest.SSHGuest(
                self._server_ip(server), CONF.validation.image_ssh_user,
                CONF.validation.image_ssh_password, server,
                self.servers_client, CONF.spdk_openstack.build_timeout)
        return guest.ConsoleGuest(server['id'], self.servers_client,
                                  CONF.spdk_openstack.build_timeout)

    @staticmethod
    def _server_ip(server):
        for addresses in server['addresses'].values():
            for address in addresses:
                if address.get('OS-EXT-IPS:type') == 'floating':
                    return address['addr']
        return next(iter(server['addresses'].values()))[0]['addr']

    def attach(self, server_id, volume_id):
        self.servers_client.attach_volume(server_id, volumeId=volume_id)
        self.addCleanup(self._detach_quietly, server_id, volume_id)
        self.wait_volume(volume_id, 'in-use')

    def detach(self, server_id, volume_id):
        self.servers_client.detach_volume(server_id, volume_id)
        self.wait_volume(volume_id, 'available')

    def _detach_quietly(self, server_id, volume_id):
        if self.volumes_client.show_volume(volume_id)['volume'][
                'status'] == 'in-use':
            test_utils.call_and_ignore_notfound_exc(
                self.detach, server_id, volume_id)

    def vhost_volume_on_server(self):
        """(server, volume, guest): a new server with a new volume of the
        vhost-attach type attached.
        """
        self.require_vhost()
        volume = self.create_volume(
            volume_type=CONF.spdk_openstack.vhost_volume_type)
        server = self.create_server()
        self.attach(server['id'], volume['id'])
        return server, volume, self.guest(server)

    def require_vhost(self):
        if not CONF.spdk_openstack.vhost_enabled:
            raise self.skipException(
                'Compute nodes do not run spdk-vhost-target '
                '([spdk_openstack] vhost_enabled = False)')


def _b64(text):
    return base64.b64encode(text.encode()).decode()
