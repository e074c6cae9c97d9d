"""Inside a guest: SSH with a pinned host key (``ssh``, the only module that
imports ``paramiko``), key generation, and the cloud-init NoCloud seed.
"""
