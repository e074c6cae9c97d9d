"""The one change vmctl makes to a partition table: for the fast profile, the root
partition of a new VM's disk grown to the disk's end before its first boot, as
cloud-init's growpart would do in the guest (seconds of emulated CPU there).

Only the layout vmctl's image builds make is touched: an MBR with one partition
(the root) and the other three entries empty. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct

SECTOR = 512
TABLE = 446  # the four 16-byte partition entries start here
SIGNATURE = b"\x55\xaa"
MAX_SECTORS = 2**32 - 1  # an MBR entry counts sectors in 32 bits
# growpart (cloud-guest-utils, which cloud-init runs) ends a grown partition 33 sectors
# before the disk's end, room for a GPT's backup table: a fast VM's partition is the
# same size as a stock one's (tests/e2e compares them).
KEPT_AT_END = 33


def grown(mbr: bytes, disk_sectors: int) -> bytes | None:
    """``mbr`` with its only partition grown to end where growpart ends it on a disk of
    ``disk_sectors``; None when the table is not a one-partition MBR, or the partition
    already reaches that far."""
    if len(mbr) != SECTOR or mbr[510:] != SIGNATURE:
        return None
    entries = [mbr[TABLE + 16 * i:TABLE + 16 * (i + 1)] for i in range(4)]
    if entries[0][4] == 0 or any(e != bytes(16) for e in entries[1:]):
        return None
    first, count = struct.unpack("<II", entries[0][8:16])
    wanted = min(disk_sectors - KEPT_AT_END - first, MAX_SECTORS)
    if first == 0 or wanted <= count:
        return None
    return mbr[:TABLE + 12] + struct.pack("<I", wanted) + mbr[TABLE + 16:]


def partition_sectors(mbr: bytes) -> tuple[int, int]:
    """The first partition's first sector and its size in sectors."""
    first, count = struct.unpack("<II", mbr[TABLE + 8:TABLE + 16])
    return first, count
