"""Reads, overwrites, appends to, chmods and deletes the canary files the
test made, after trying to make their folders writable."""
# @kit

for path in CONFIG["canaries"]:
    escalate(os.path.dirname(path))


def show(path):
    with open(path) as fh:
        print(f"read {path}: {fh.read()}", flush=True)


def overwrite(path):
    with open(path, "r+") as fh:
        fh.write("overwritten by an nskit hostile test\n")


def append(path):
    with open(path, "a") as fh:
        fh.write("appended by an nskit hostile test\n")


for path in CONFIG["canaries"]:
    attempt("canaries", f"read {path}", lambda: show(path))
    attempt("canaries", f"overwrite {path}", lambda: overwrite(path))
    attempt("canaries", f"append to {path}", lambda: append(path))
    attempt("canaries", f"chmod {path}", lambda: os.chmod(path, 0o666))
    attempt("canaries", f"delete {path}", lambda: os.unlink(path))
run_the_command()
