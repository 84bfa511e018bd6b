"""The Gradescope autograder: `make gradescope-bundle` builds its zip."""
