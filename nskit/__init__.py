"""nskit: the namespace half of `docker run`, step by step, and its grader.

The `nskit` command (nskit/cli.py) runs what the Makefile's targets run.
"""
