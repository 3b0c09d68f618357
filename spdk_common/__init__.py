"""Pieces shared by every spdk-openstack component.

The SPDK JSON-RPC client, the exceptions it raises and the naming rules
(NQNs, lvol names) live here so that the Cinder driver, the compute-node
agent and the Nova hooks speak to SPDK in exactly one way.
"""
