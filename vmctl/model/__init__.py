"""Pure values: what a user asks for (machine and network specs), the metadata
record kept in each libvirt domain, and the boot profiles. No I/O beyond reading
the profiles that ship with vmctl.
"""
