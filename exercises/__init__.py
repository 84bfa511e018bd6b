"""The exercises: one task per step, and the script that writes work/."""
