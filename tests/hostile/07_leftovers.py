"""Leaves files in /tmp, /var/tmp, /dev/shm and /run/lock (plainly, then
after peeling off the host's tmpfs and remounting what is below read-write),
and a daemon that outlives it."""
# @kit

for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
    left = f"{folder}/nskit-left-{CONFIG['token']}"
    attempt("leftovers", f"leave a file in {folder}", write_new(left + "-plain"))
    escalate(folder)
    attempt("leftovers", f"leave a file in {folder}, after trying to uncover the machine's", write_new(left))

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", f"{CONFIG['sleep']}"])
    os._exit(0)
os.wait()
say("leftovers", "a daemon", "started")
run_the_command()
