"""Looks for other learners' work and the machine's private places: lists
and prints every file it can reach in the class folder, the grader's folder,
/root, /home, /work and /srv, and connects to the machine's unix sockets."""
# @kit
import socket

places = [*CONFIG["targets"], CONFIG["grader"], "/root", "/home", "/work", "/srv", "/var/lib"]


def dump(place):
    found = 0
    for folder, folders, names in os.walk(place):
        # The interpreter a run needs is bound where it lives: not a secret.
        folders[:] = [f for f in folders if not os.path.join(folder, f).startswith(sys.base_prefix)]
        for name in names[:100]:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as fh:
                    print(f"read {path}: {fh.read(1024).decode(errors='replace')}", flush=True)
                found += 1
            except OSError:
                pass
    if not found:
        raise FileNotFoundError(2, "nothing to read")


for place in places:
    attempt("snoop", f"read the files in {place}", lambda: dump(place))


def connect(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)


for path in CONFIG["sockets"]:
    attempt("snoop", f"connect to {path}", lambda: connect(path))
run_the_command()
