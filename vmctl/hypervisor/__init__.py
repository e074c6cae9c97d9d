"""The hypervisor side: the libvirt adapter (``driver``, the only module that
imports ``libvirt``), libvirt XML rendering, vmctl's private libvirtd runtime,
the accelerator probe, qcow2 overlays, and the serial console log.
"""
