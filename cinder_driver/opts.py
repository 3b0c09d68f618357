"""oslo.config entry point: the driver's options for the sample generator."""

import copy

from cinder_driver import spdk


def list_opts():
    # Options live in each back-end section; the sample shows them there.
    return [('backend_spdk', copy.deepcopy(spdk.spdk_opts))]
