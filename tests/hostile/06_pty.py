"""Opens /dev/ptmx three times and keeps the ptys while its command runs."""
# @kit

ptys = []


def open_pty():
    fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    ptys.append(fd)


for _ in range(3):
    attempt("pty", "open /dev/ptmx", open_pty)
say("pty", "its /dev/pts", " ".join(sorted(os.listdir("/dev/pts"))))
say("pty", "/dev/ptmx is", os.path.realpath("/dev/ptmx"))
run_the_command()
