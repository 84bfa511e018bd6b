"""The `make step-NN` demos: each step's commands from the article, as the
host sees them and through the step, side by side.

    python -m demo NN        (what `make step-NN` runs)
"""
