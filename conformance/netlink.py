"""The run's network links, asked of the kernel over rtnetlink: an `ip` run
would cost every graded run a few milliseconds more. And, for the grader's
reader of a step 11 (observe.pivot_view), what a network namespace holds,
the id it knows another one by, and whether an address answers a ping."""
import os
import select
import socket
import struct
import time

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


# -- what a network namespace holds: read by the grader, never trusted to a run ----

RTM_GETLINK, RTM_GETADDR, RTM_GETNSID = 18, 22, 90
NLM_F_DUMP, NLMSG_DONE = 0x300, 3
IFLA_LINK, IFLA_LINK_NETNSID = 5, 37
IFA_ADDRESS, IFA_LOCAL = 1, 2
NETNSA_NSID, NETNSA_PID = 1, 2
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
SOME = 256  # links and addresses kept of a namespace


def _messages(request):
    """The kernel's answers to one request: (type, payload) until done."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(request)
        while True:
            data, offset = nl.recv(1 << 16), 0
            while offset + 16 <= len(data):
                size, kind = struct.unpack_from("IH", data, offset)
                if kind == NLMSG_DONE or size < 16:
                    return
                if kind == NLMSG_ERROR:
                    error, = struct.unpack_from("i", data, offset + 16)
                    if error:
                        raise OSError(-error, f"rtnetlink: {os.strerror(-error)}")
                    return
                yield kind, data[offset + 16:offset + size]
                offset += (size + 3) & ~3


def _attributes(payload, offset):
    out = {}
    while offset + 4 <= len(payload):
        size, kind = struct.unpack_from("HH", payload, offset)
        if size < 4:
            break
        out.setdefault(kind & 0x3FFF, payload[offset + 4:offset + size])
        offset += (size + 3) & ~3
    return out


def _dump(kind, body):
    return _messages(struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                     + body)


def links():
    """This network namespace's links, by index: name (bytes),
    up, IPv4 addresses, and the peer's index and namespace id where the
    link has one (a veth's other end)."""
    out = {}
    for _, msg in _dump(RTM_GETLINK, _ifinfo()):
        if len(out) >= SOME or len(msg) < 16:
            break
        _, _, index, flags, _ = struct.unpack_from("BxHiII", msg)
        found = _attributes(msg, 16)
        peer = found.get(IFLA_LINK)
        nsid = found.get(IFLA_LINK_NETNSID)
        out[index] = {
            "name": found.get(IFLA_IFNAME, b"").split(b"\0")[0][:64],
            "up": bool(flags & IFF_UP), "ipv4": [],
            "peer": struct.unpack("i", peer[:4])[0] if peer and len(peer) >= 4 else None,
            "peer_netnsid": struct.unpack("i", nsid[:4])[0] if nsid and len(nsid) >= 4 else None}
    for _, msg in _dump(RTM_GETADDR, struct.pack("BBBBi", socket.AF_INET, 0, 0, 0, 0)):
        if len(msg) < 8:
            continue
        _, length, _, _, index = struct.unpack_from("BBBBi", msg)
        found = _attributes(msg, 8)
        raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
        if index in out and raw and len(raw) == 4 and len(out[index]["ipv4"]) < SOME:
            out[index]["ipv4"].append(f"{socket.inet_ntoa(raw)}/{length}")
    return out


def netnsid_of(pid):
    """The id this network namespace knows the network namespace of pid by
    (a process the caller sees), or None where it knows it by none."""
    body = struct.pack("Bxxx", socket.AF_UNSPEC) + _rtattr(NETNSA_PID, struct.pack("I", pid))
    request = struct.pack("IHHII", 16 + len(body), RTM_GETNSID, NLM_F_REQUEST, 1, 0) + body
    for _, msg in _messages(request):
        found = _attributes(msg, 4)
        nsid = found.get(NETNSA_NSID)
        if nsid and len(nsid) >= 4:
            value, = struct.unpack("i", nsid[:4])
            return value if value >= 0 else None
    return None


def _checksum(data):
    data += bytes(len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def answers_ping(address, within):
    """Whether address answers one ICMP echo from this network namespace
    within the given seconds (a bound: a link answers in microseconds)."""
    ident, payload = os.getpid() & 0xFFFF, b"nskit"
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(head + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as icmp:
        icmp.sendto(packet, (address, 0))
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([icmp], [], [], left)[0]:
                break
            data, (source, _) = icmp.recvfrom(1500)
            reply = data[(data[0] & 0xF) * 4:]
            if source == address and len(reply) >= 8:
                kind, _, _, their_ident, seq = struct.unpack_from("!BBHHH", reply)
                if (kind, their_ident, seq) == (ICMP_ECHOREPLY, ident, 1):
                    return True
    return False
