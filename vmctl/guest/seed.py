"""The NoCloud seed: an ISO 9660 image labelled ``cidata``, built in-process."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

from .cloudinit import SeedData

SEED_FILE_MODE = 0o100400  # a regular file, read by root only

# ISO 9660 names are short and upper-case; Rock Ridge and Joliet carry the real ones.
_ISO_NAMES = {
    "user-data": "USERDATA.;1", "meta-data": "METADATA.;1", "network-config": "NETWORKC.;1",
    # for the fast profile's early unit (templates/image/vmctl-fast-boot.sh.j2)
    "vmctl-user": "VMUSER.;1", "vmctl-hostname": "VMHOST.;1", "vmctl-host-key": "VMHKEY.;1",
    "vmctl-host-key.pub": "VMHKPUB.;1", "vmctl-authorized-keys": "VMAUTH.;1", "vmctl-hosts": "VMHOSTS.;1",
}


def seed_iso(data: SeedData) -> bytes:
    """The seed as an ISO image's bytes (uploaded as a volume by ``up``).

    Inside, every file is root's alone (Rock Ridge mode 0400): the host key is
    in the user-data and in ``vmctl-host-key``, and a guest mounts the seed.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, content in data.files().items():
        iso.add_fp(io.BytesIO(content), len(content), f"/{_ISO_NAMES[name]}",
                   rr_name=name, joliet_path=f"/{name}", file_mode=SEED_FILE_MODE)
    out = io.BytesIO()
    try:
        iso.write_fp(out)
    finally:
        iso.close()
    return out.getvalue()


def read_seed(path: Path) -> dict[str, bytes]:
    """The files in a seed, by their Rock Ridge names (for tests and inspection)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = {}
        for child in iso.list_children(rr_path="/"):
            name = child.rock_ridge.name().decode() if child.rock_ridge else ""
            if name in _ISO_NAMES:
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
                out[name] = buf.getvalue()
        return out
    finally:
        iso.close()
