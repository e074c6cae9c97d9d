"""Core utilities every layer may use: paths, locks and atomic writes, host
commands, progress reporting, the one polling helper, Jinja rendering, and
sockets inside a network namespace. Imports nothing of vmctl but ``errors``.
"""
