"""Makes a device node (/dev/null's numbers), in /tmp and in the machine's
/dev made writable."""
# @kit
import stat

for folder in ("/tmp", "/dev"):
    if folder != "/tmp":
        escalate(folder)
    node = f"{folder}/nskit-node-{CONFIG['token']}"

    def make(node=node):
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.unlink(node)   # harmless where it goes through
    attempt("mknod", f"mknod in {folder}", make)
run_the_command()
