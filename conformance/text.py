"""Names as people and parsers can read them.

A name on Linux is bytes: a learner's folder, a step file, a mount point, a
link or a hostname a program made may hold any byte but NUL (and "/" for
file names). Python hands file names over as text with each byte that is not
UTF-8 kept as a lone surrogate, which no report encoding accepts. shown()
turns any of them into printable text that every report format carries as
it is (UTF-8, XML 1.0, CSV, a terminal): a byte that is not UTF-8 reads
`\\xff`, a control character `\\x1b`, so one learner's name can neither break
a report nor write escape sequences to a terminal.
"""
import os
import re
import shutil

# Lone surrogates (file names' undecodable bytes), C0 and C1 controls, DEL,
# and the two characters XML 1.0 refuses outright.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_UNSHOWN_IN_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escape(match):
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def shown(value, lines=False):
    """value (bytes, str, a path or None) as printable text: every byte that
    is not UTF-8 and every control character escaped; with lines, newlines
    and tabs are kept (a hint, what a program printed)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    elif not isinstance(value, str):
        value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
    return (_UNSHOWN_IN_LINES if lines else _UNSHOWN).sub(_escape, value)


def shown_data(data):
    """JSON-shaped data (dicts, lists, text, numbers) with every text and
    every key shown(): what json.dumps can write as UTF-8."""
    if isinstance(data, str):
        return shown(data, lines=True)
    if isinstance(data, dict):
        return {shown(key) if isinstance(key, str) else key: shown_data(value)
                for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [shown_data(item) for item in data]
    return data


def write_whole(path, data):
    """Write data (text, as UTF-8; or a binary file to copy) to path, whole or
    not at all: into a temporary file beside it, renamed into place, so a
    grader stopped halfway never leaves half a report where a platform would
    read it. Its folder is made where there is none yet."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.part")
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        if isinstance(data, str):
            with open(temporary, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        else:
            with open(temporary, "wb") as fh:
                shutil.copyfileobj(data, fh)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
