"""The all-in-one cloud's configuration files."""

import configparser
import os
import stat

import fixtures

from tests import base
from tools.aio_cloud import configs
from tools.aio_cloud import layout as layout_mod

SECRET = {name: name + '-pw' for name in
          ('database', 'rabbitmq', 'admin') + layout_mod.SERVICE_USERS}


class TestConfigs(base.TestCase):

    def setUp(self):
        super().setUp()
        self.layout = layout_mod.Layout('/srv/cloud')

    def test_every_port_is_loopback_and_clear_of_the_tests(self):
        self.assertEqual(len(layout_mod.PORTS),
                         len(set(layout_mod.PORTS.values())))
        self.assertTrue(all(port >= 13000
                            for port in layout_mod.PORTS.values()))

    def test_nova_compute_has_no_database_and_the_plugin_driver(self):
        conf = configs.nova_compute(self.layout, SECRET, '/venv')
        self.assertNotIn('database', conf)
        self.assertNotIn('api_database', conf)
        self.assertEqual('spdk_libvirt.SPDKLibvirtDriver',
                         conf['DEFAULT']['compute_driver'])
        self.assertEqual('qemu', conf['libvirt']['virt_type'])
        self.assertIn('socket=/srv/cloud/libvirt/sock/libvirt-sock',
                      conf['libvirt']['connection_uri'])
        self.assertTrue(conf['DEFAULT']['force_config_drive'])
        self.assertEqual('/venv/bin/privsep-helper',
                         conf['privsep_osbrick']['helper_command'])

    def test_service_tokens_for_cinder_and_nova(self):
        for conf in (configs.cinder(self.layout, SECRET, '/venv'),
                     configs.nova(self.layout, SECRET)):
            self.assertTrue(conf['service_user']['send_service_user_token'])
        self.assertEqual('cinder', configs.cinder(
            self.layout, SECRET, '/venv')['service_user']['username'])

    def test_cinder_spdk_backend(self):
        conf = configs.cinder(self.layout, SECRET, '/venv')
        backend = conf[conf['DEFAULT']['enabled_backends']]
        self.assertEqual('cinder_driver.spdk.SPDKDriver',
                         backend['volume_driver'])
        self.assertEqual('/srv/cloud/spdk/nvmf.sock',
                         backend['spdk_rpc_socket'])
        self.assertEqual(layout_mod.PORTS['nvmf-tcp'],
                         backend['spdk_target_port'])
        self.assertEqual('/venv/bin/privsep-helper',
                         conf['cinder_sys_admin']['helper_command'])

    def test_database_urls_carry_the_generated_password(self):
        self.assertEqual(
            'mysql+pymysql://aio:database-pw@127.0.0.1:13306/glance'
            '?charset=utf8',
            configs.glance(self.layout, SECRET)['database']['connection'])

    def test_uwsgi_passes_no_arguments_but_pyargv(self):
        ini = configs.uwsgi(self.layout, '/venv', 'cinder-api', 'm:app',
                            pyargv='--config-file c')['uwsgi']
        self.assertEqual('127.0.0.1:13776', ini['http-socket'])
        self.assertEqual('--config-file c', ini['pyargv'])
        self.assertEqual('Connection: close', ini['add-header'])
        self.assertEqual(1, ini['processes'])

    def test_agent_conf(self):
        conf = configs.vhost_agent(self.layout, SECRET, '/spdk/vhost',
                                   'nqn.x', 1, 256)['spdk_vhost_target']
        self.assertEqual('/srv/cloud/etc/nova/nova-compute.conf',
                         conf['nova_conf'])
        self.assertEqual('libvirt-qemu', conf['socket_group'])
        self.assertEqual('1', conf['reactor_cpus'])

    def test_write_ini_is_private_and_parses(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'c')
        configs.write_ini(path, {'DEFAULT': {'flag': True, 'empty': '',
                                             'multi': ['a', 'b']}})
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))
        parser = configparser.ConfigParser(strict=False)
        parser.read(path)
        self.assertEqual('true', parser['DEFAULT']['flag'])
        self.assertEqual('', parser['DEFAULT']['empty'])


class TestSecrets(base.TestCase):

    def test_generated_once_and_private(self):
        root = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(root, 'etc'))
        layout = layout_mod.Layout(root)
        first = layout_mod.load_or_create_secrets(layout)
        self.assertEqual(first, layout_mod.load_or_create_secrets(layout))
        self.assertEqual(0o600, stat.S_IMODE(
            os.stat(layout.secrets_file).st_mode))
        self.assertEqual(len(first), len(set(first.values())))


class TestCinderSpdkDd(base.TestCase):

    def test_the_hugepages_of_spdk_dd_are_what_up_counts(self):
        conf = configs.cinder(layout_mod.Layout('/srv/cloud'), SECRET, '/v')
        self.assertEqual(layout_mod.SPDK_DD_MEM_MIB,
                         conf[configs.SPDK_BACKEND]['spdk_dd_mem_mib'])


class TestUwsgiChunkedInput(base.TestCase):

    def test_only_glance_takes_chunked_uploads(self):
        layout = layout_mod.Layout('/srv/cloud')
        glance = configs.uwsgi(layout, '/venv', 'glance-api', 'm:app',
                               chunked_input=True)['uwsgi']
        self.assertTrue(glance['http-chunked-input'])
        # Above glanceclient's 1 MiB chunks, with room for their headers.
        self.assertGreater(glance['chunked-input-limit'], 1 << 20)
        self.assertGreaterEqual(glance['chunked-input-timeout'], 30)
        nova = configs.uwsgi(layout, '/venv', 'nova-api', 'm:app')['uwsgi']
        self.assertNotIn('chunked-input-limit', nova)
