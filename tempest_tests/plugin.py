"""The tempest plugin, registered on the ``tempest.test_plugins`` entry
point."""

import os

from tempest import config
from tempest.test_discover import plugins

from tempest_tests import config as spdk_config


class SPDKOpenStackTempestPlugin(plugins.TempestPlugin):
    def load_tests(self):
        base_path = os.path.split(os.path.dirname(
            os.path.abspath(__file__)))[0]
        test_dir = 'tempest_tests/tests'
        return os.path.join(base_path, test_dir), base_path

    def register_opts(self, conf):
        config.register_opt_group(conf, spdk_config.service_available_group,
                                  [spdk_config.service_option])
        config.register_opt_group(conf, spdk_config.spdk_group,
                                  spdk_config.SPDKOptions)

    def get_opt_lists(self):
        return spdk_config.list_opts()
