"""What the grader and its runs say to each other: a run's request and its
limits, the result that comes back, and the words on their pipes.

A run's setup may ask for its user namespace's id maps (ASK_MAPS, answered
MAPS_WRITTEN on its control pipe); otherwise it sends one message and closes
its pipe: REFUSED or FAILED and a sentence, or RESULT. Whatever arrives,
however broken, fails that run alone, with its reason. The run's PID 1 and
the grader's Watch share a socket too: PROGRAM_ENDED, answered TEAR_DOWN.
"""
import json
import os
import pickle
import struct
from dataclasses import dataclass, field

ASK_MAPS, MAPS_WRITTEN, REFUSED, FAILED, RESULT = b"U", b"G", b"X", b"E", b"R"
# What the run's PID 1 and the grader say to each other on the witness socket.
PROGRAM_ENDED, TEAR_DOWN = b"E", b"K"


@dataclass
class Limits:
    timeout: float = 10.0
    processes: int = 256
    memory: int = 1 << 30
    output: int = 1 << 20
    tmpfs: str = "64m"
    file_size: int = 64 << 20
    program: int = 16 << 20    # the largest program a run copies in
    propagation: str = "shared"  # the run's host's mounts: "shared" as systemd's, or "private"


@dataclass
class Request:
    """One program run: argv inside the host, plus what it must be able to reach."""
    argv: list
    reach: list = field(default_factory=list)   # folders to bind read-only at the same path
    # path inside (under /nskit) -> bytes, or the path of a file on the machine
    # read when the run starts (never through a link); copied in, mode 0755
    files: dict = field(default_factory=dict)
    tag: object = None
    # The program is a parent in charge of its command (steps beyond Part 1):
    # the grader also follows its clones and kills it once its command is seen.
    parent_in_charge: bool = False
    # The run's host holds a root for the program to pivot into (rootfs.PIVOT_ROOT),
    # named in its environment (catalog.ROOTFS_VARIABLE).
    pivot_root: bool = False


@dataclass
class Result:
    request: Request
    output: bytes = b""
    cut: int = 0               # bytes of output dropped from the middle
    status: int = None         # the program's wait status
    before: dict = None        # the host as PID 1 saw it before the program ran
    after: dict = None         # ... and after it, and everything it left, had ended
    leftover: list = None      # processes still running when the program exited
    error: str = None          # why there is no verdict from inside: timed out, crashed
    refused: bool = False      # error is the machine's refusal of user namespaces
    witness: object = None     # what the grader observed of the command (journal.Watched)
    seconds: float = 0.0


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send_result(fd, output, cut, status, before, after, leftover):
    """RESULT, the length of a JSON header, the header, then the output's
    bytes as they are."""
    header = json.dumps({"cut": cut, "status": status, "before": before, "after": after,
                         "leftover": leftover}).encode()
    send(fd, RESULT + struct.pack("I", len(header)) + header + output)


def decode_result(data, result):
    """Fill result from what the run sent, or say why it cannot be."""
    if data.startswith(FAILED):
        result.error = data[1:].decode(errors="replace")[:1000]
        return result
    if data.startswith(REFUSED):
        result.error, result.refused = data[1:].decode(errors="replace")[:1000], True
        return result
    try:
        if not data.startswith(RESULT):
            raise ValueError("no result")
        size, = struct.unpack_from("I", data, 1)
        payload = json.loads(data[5:5 + size])
        result.output = data[5 + size:]
        result.cut, result.status = int(payload["cut"]), int(payload["status"])
        result.before, result.after = dict(payload["before"]), dict(payload["after"])
        result.leftover = [str(line) for line in payload["leftover"]]
    except (ValueError, KeyError, TypeError, struct.error):
        result.output, result.before, result.after = b"", None, None
        result.error = "the run ended without a result (its host crashed)"
    return result


# The grader's messages to a run's setup, before the run has anything of a
# learner's: its cgroup, then its request. Pickled: they come from the grader.
def read_message(fd):
    size, = struct.unpack("I", _read_exactly(fd, 4))
    return pickle.loads(_read_exactly(fd, size))


def send_message(fd, value):
    data = pickle.dumps(value)
    send(fd, struct.pack("I", len(data)) + data)


def _read_exactly(fd, size):
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise ValueError("the grader closed the pipe")
        data += chunk
    return bytes(data)
