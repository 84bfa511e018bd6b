"""The run's network links, asked of the kernel over rtnetlink: an `ip` run
would cost every graded run a few milliseconds more."""
import os
import socket
import struct

RTM_NEWLINK, NLMSG_ERROR = 16, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 3, 18, 1, 2, 1
IFF_UP = 0x1
LO_INDEX = 1  # the first link of every new network namespace


def _rtattr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + bytes(-size % 4)


def _ifinfo(index=0, up=False):
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP if up else 0,
                       IFF_UP if up else 0)


def _newlink(body, create=False):
    """One RTM_NEWLINK request, answered by the kernel's ack or its error."""
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if create else 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(struct.pack("IHHII", 16 + len(body), RTM_NEWLINK, flags, 1, 0) + body)
        reply = nl.recv(65536)
    kind, = struct.unpack_from("H", reply, 4)
    error, = struct.unpack_from("i", reply, 16) if kind == NLMSG_ERROR else (0,)
    if error:
        raise OSError(-error, f"rtnetlink: {os.strerror(-error)}")


def furnish_links():
    """lo up, as on a machine, and a placeholder link: no dummy module on
    every kernel, so a veth pair (nskit0, nskit1)."""
    _newlink(_ifinfo(index=LO_INDEX, up=True))
    peer = _ifinfo() + _rtattr(IFLA_IFNAME, b"nskit1\0")
    veth = _rtattr(IFLA_INFO_KIND, b"veth") + _rtattr(IFLA_INFO_DATA, _rtattr(VETH_INFO_PEER, peer))
    _newlink(_ifinfo() + _rtattr(IFLA_IFNAME, b"nskit0\0") + _rtattr(IFLA_LINKINFO, veth),
             create=True)
