"""Plants a file in /, /etc, /usr/local/bin, the grader's folder, the
target folder and its own folder, after trying to make each writable."""
# @kit

places = ["/", "/etc", "/usr/local/bin", CONFIG["grader"], *CONFIG["targets"],
          os.path.dirname(os.path.abspath(sys.argv[0]))]
for place in places:
    escalate(place)
    name = os.path.join(place, f"nskit-planted-{CONFIG['token']}")
    attempt("plant", f"plant in {place}", write_new(name))
run_the_command()
