"""Every spdk-openstack error: the SPDK client's, the naming and contract
checks', the compute agent's (which reach nova-compute over RPC as these
very classes) and its privsep daemon's.

One root, ``SPDKException``, with a templated ``message`` the way os-brick
does it: subclasses set ``message`` and callers pass the template's fields
as keyword arguments.
"""

import errno
import os

# Where the errors of every spdk-openstack RPC service are defined: the
# allowed_remote_exmods of their transports, so that callers get these very
# classes back.
REMOTE_EXMODS = [__name__]


class SPDKException(Exception):
    """Base of every spdk-openstack error."""

    message = "An unknown SPDK error occurred."

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if not message:
            try:
                message = self.message % kwargs
            except (KeyError, TypeError):
                # A template/argument mismatch must not hide the real error.
                message = self.message
        self.msg = message
        super().__init__(message)


class SPDKUnavailable(SPDKException):
    message = ("SPDK at %(socket)s is unavailable: %(reason)s. Check that the "
               "SPDK application is running and that this service may open "
               "its RPC socket.")


class SPDKTimeout(SPDKUnavailable):
    message = ("SPDK at %(socket)s did not answer %(method)s within "
               "%(timeout)s seconds.")


class SPDKRPCError(SPDKException):
    """SPDK answered a call with a JSON-RPC error.

    ``code`` keeps SPDK's own error code (a negative errno for most RPCs,
    or a JSON-RPC code such as -32602) so that callers can branch on it.
    """

    message = "SPDK %(method)s failed: %(error)s (code %(code)s)"

    def __init__(self, message=None, **kwargs):
        self.code = kwargs.get('code')
        self.method = kwargs.get('method')
        self.error = kwargs.get('error')
        super().__init__(message, **kwargs)


class SPDKNotFound(SPDKRPCError):
    pass


class SPDKExists(SPDKRPCError):
    pass


class SPDKNoSpace(SPDKRPCError):
    pass


class SPDKBusy(SPDKRPCError):
    pass


class SPDKInvalidParams(SPDKRPCError):
    pass


class SPDKMethodNotFound(SPDKRPCError):
    pass


class InvalidNQN(SPDKException):
    message = "Invalid NVMe qualified name %(nqn)r: %(reason)s."


# Enough for the NQNs and ids of real requests; longer values are cut.
_SHOWN_CHARS = 100


def shown(value, secret=False):
    """The value for an error message: its repr, cut short if long.

    A secret is never shown, only its type and length, so that errors and
    the logs that carry them stay free of key material.
    """
    if secret:
        if isinstance(value, str):
            return '(withheld, %d characters)' % len(value)
        return '(withheld, a %s)' % type(value).__name__
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        try:
            size = ', %d long' % len(value)
        except TypeError:
            size = ''
        text = '%s... (%s%s)' % (text[:_SHOWN_CHARS],
                                 type(value).__name__, size)
    return text


class InvalidField(SPDKException, ValueError):
    """One field of a request or a connection contract is wrong; the
    message names the field and its value (a secret's only by type and
    length).
    """

    message = '%(field)s %(value)s %(reason)s'

    def __init__(self, field, value, reason, secret=False):
        self.field = field
        self.value = shown(value, secret)
        self.reason = reason
        super().__init__(field=field, value=self.value, reason=reason)


# JSON-RPC 2.0 codes that SPDK uses next to negative errno values.
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_METHOD_NOT_FOUND = -32601

_ERROR_CLASSES = {
    -errno.ENODEV: SPDKNotFound,
    -errno.ENOENT: SPDKNotFound,
    -errno.EEXIST: SPDKExists,
    -errno.ENOSPC: SPDKNoSpace,
    -errno.EBUSY: SPDKBusy,
    -errno.EAGAIN: SPDKBusy,
    -errno.EINVAL: SPDKInvalidParams,
    JSONRPC_INVALID_PARAMS: SPDKInvalidParams,
    JSONRPC_METHOD_NOT_FOUND: SPDKMethodNotFound,
}


# Many SPDK RPCs report an errno only as its strerror() text under a
# generic JSON-RPC code (e.g. a thick bdev_lvol_create beyond free space is
# -32602 "No space left on device"); the text then decides the class.
_GENERIC_CODES = (JSONRPC_INVALID_PARAMS, -32603)
_ERROR_TEXTS = (
    (os.strerror(errno.ENOSPC), SPDKNoSpace),
    (os.strerror(errno.EEXIST), SPDKExists),
    (os.strerror(errno.ENODEV), SPDKNotFound),
    (os.strerror(errno.ENOENT), SPDKNotFound),
    (os.strerror(errno.EBUSY), SPDKBusy),
    (os.strerror(errno.EAGAIN), SPDKBusy),
)


def from_rpc_error(method, error):
    """Build the typed exception for one JSON-RPC error object."""
    code = error.get('code')
    text = error.get('message') or 'no message'
    # A few RPCs send a positive errno (bdev_nvme_get_controllers: 22).
    errno_code = -code if isinstance(code, int) and 0 < code < 4096 else code
    cls = _ERROR_CLASSES.get(errno_code, SPDKRPCError)
    if code in _GENERIC_CODES:
        for known, text_cls in _ERROR_TEXTS:
            if known in text:
                cls = text_cls
                break
    return cls(method=method, code=code, error=text)


# -- The compute node's agent (vhost_target): what its RPC callers get back.


class InvalidAttachRequest(SPDKException):
    message = 'Invalid attach request for volume %(volume)s: %(reason)s'


class InvalidRequest(InvalidAttachRequest):
    """One field of an RPC request is wrong (any call, not only attach).

    A subclass of InvalidAttachRequest so that callers that catch that keep
    working; defined here, in a module the RPC transport lists in
    ``allowed_remote_exmods``, so callers get this class back.
    """

    message = 'Invalid %(method)s request: %(field)s %(value)s %(reason)s.'


class UnknownVolume(SPDKException):
    message = 'Volume %(volume)s is not attached on this host.'


class CopyNotReplaced(SPDKException):
    """The operator's replacement of a replicated volume's copy was
    refused or failed; nothing changed.
    """
    message = 'Volume %(volume)s: the copy was not replaced: %(reason)s'


class NoRoom(SPDKException):
    message = ('This host\'s SPDK vhost holds at most %(limit)d '
               'attachment(s) in hugepage_mib_per_node=%(memory)d MiB, and '
               '%(attached)d are attached: raise [spdk_vhost_target] '
               'hugepage_mib_per_node (about 1 MiB per attachment; Nova\'s '
               'reserved_huge_pages with it) or attach on another host.')


class AttachError(SPDKException):
    message = 'Could not attach volume %(volume)s: %(reason)s'


class VolumeBusy(SPDKException):
    message = ('Volume %(volume)s is busy: the guest still has the disk open '
               '(%(sessions)d vhost-user connection(s) on %(socket)s); '
               'detach the disk from the guest, then detach the volume '
               'again.')


class SupervisorError(SPDKException):
    message = 'SPDK vhost: %(reason)s'


class TopologyError(SPDKException):
    """The host's topology cannot be read from the given root."""


# -- The agent's privsep daemon refuses an argument (raised in the daemon,
# re-raised in the agent).


class UnsafePath(SPDKException):
    """A path the daemon will not act on: a symlink, not root's, or a file
    of the wrong type.
    """


class NotSPDK(SPDKException):
    """The process named is not the SPDK vhost application of that RPC
    socket.
    """


class SessionsError(SPDKException):
    pass


# -- Front-end and back-end QoS limits.


class InvalidQoS(SPDKException):
    message = '%(reason)s'
