"""Writes global sysctls: each gets back the value it had."""
# @kit

for path in ("/proc/sys/vm/swappiness", "/proc/sys/kernel/printk_ratelimit"):
    def write_back(path=path):
        with open(path) as fh:
            value = fh.read()
        with open(path, "w") as fh:
            fh.write(value)
    attempt("sysctl", f"write {path}", write_back)
run_the_command()
