"""Prints 200 MB, then runs the command."""
# @kit

block = b"x" * (1 << 20)
for _ in range(200):
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
print(flush=True)
run_the_command()
