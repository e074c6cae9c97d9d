"""VMs over their life: ``Host`` (a libvirt connection and vmctl's view of its VMs),
``Machine`` (one VM: state, address, SSH, power), the ``up`` lifecycle, bakes,
and OpenSSH client settings.
"""
