"""The compute agent's notifications, as the agent sends them and Cinder's
driver reads them: one owner of their exchange, event types and payload
version.

The agent publishes on the message bus (oslo.messaging's ``messagingv2``
driver, topic ``notifications``) on its own exchange, so that a listener
finds them whatever the control exchange of its own service. Payloads
carry ``version`` (major.minor; minor versions only add fields).
"""

EXCHANGE = 'spdk-vhost-target'
TOPIC = 'notifications'
PUBLISHER = 'spdk-vhost-target'
EVENT_PREFIX = 'spdk_vhost_target.'
VERSION = '1.0'
# A replicated volume's mirror on a compute host: a copy out of it, a copy
# being rebuilt, every copy in sync again. Payload: volume_id, copies
# ([{index, target_nqn, state}] in the connection's order), reason.
DEGRADED = 'attachment.degraded'
REBUILDING = 'attachment.rebuilding'
MIRRORED = 'attachment.mirrored'
MIRROR_EVENTS = (DEGRADED, REBUILDING, MIRRORED)
# A copy's state in those payloads (and in Cinder's spdk_copies metadata).
COPY_IN_SYNC = 'in_sync'
COPY_MISSING = 'missing'
COPY_REBUILDING = 'rebuilding'


def event_type(event):
    return EVENT_PREFIX + event


def event_of(event_type_):
    """The agent's event name of an event type; None for another's."""
    if isinstance(event_type_, str) and event_type_.startswith(EVENT_PREFIX):
        return event_type_[len(EVENT_PREFIX):]
    return None


def get_notifier(conf, host):
    """The agent's notifier (its process' control exchange becomes the
    notifications' exchange).
    """
    import oslo_messaging as messaging   # eventlet's noise: only when used
    messaging.set_transport_defaults(control_exchange=EXCHANGE)
    return messaging.Notifier(
        messaging.get_notification_transport(conf),
        publisher_id='%s.%s' % (PUBLISHER, host), driver='messagingv2',
        topics=[TOPIC])


def get_listener(transport, endpoints, pool):
    """A listener of the agent's notifications; every ``pool`` gets each
    notification once.
    """
    import oslo_messaging as messaging
    return messaging.get_notification_listener(
        transport, [messaging.Target(exchange=EXCHANGE, topic=TOPIC)],
        endpoints, executor='threading', pool=pool)
