"""What the SPDK-tier Cinder scenarios share."""

from tests.fixtures import spdk as spdk_fixtures


class OnRealSPDK:
    """Storage side: a real nvmf_tgt in interrupt mode on core 0 (the
    compute-side vhost, where a test has one, polls core 1), on a sparse
    4 GiB file-backed lvstore.
    """

    def make_target(self):
        return spdk_fixtures.SPDKTarget(interrupt=True, size_mib=4096)
