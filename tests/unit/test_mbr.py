"""The fast profile's root partition, grown on the host in the new VM's overlay."""

from __future__ import annotations

import struct

from vmctl.hypervisor.disks import hexdump_bytes
from vmctl.images.build import mbr
from vmctl.model.mbr import KEPT_AT_END, MAX_SECTORS, grown, partition_sectors

GIB = 2**30


def test_the_built_images_partition_grows_as_far_as_growpart_grows_it() -> None:
    table = mbr(3 * GIB, b"\xeb\x63")  # what an image build writes
    assert partition_sectors(table) == (2048, 3 * GIB // 512 - 2048)
    new = grown(table, 10 * GIB // 512)
    assert new is not None and len(new) == 512
    assert partition_sectors(new) == (2048, 10 * GIB // 512 - 2048 - KEPT_AT_END)  # measured: 20969439 on 10 GiB
    assert partition_sectors(new)[1] == 20969439
    assert new[:446 + 12] == table[:446 + 12] and new[446 + 16:] == table[446 + 16:]  # only the size changed


def test_nothing_to_grow_or_not_vmctls_layout_is_left_alone() -> None:
    table = mbr(3 * GIB, b"")
    assert grown(table, 3 * GIB // 512) is None  # already at (past) the end
    assert grown(table, 3 * GIB // 512 + KEPT_AT_END) is None
    assert grown(table, 2 * GIB // 512) is None  # never shrunk
    assert grown(table[:510] + b"\0\0", 10 * GIB // 512) is None  # no MBR signature (a GPT disk's is kept)
    second = table[:462] + struct.pack("<B3sB3sII", 0, b"\0" * 3, 0x83, b"\0" * 3, 9, 9) + table[478:]
    assert grown(second, 10 * GIB // 512) is None  # two partitions: not an image vmctl built
    empty = table[:446] + bytes(64) + table[510:]
    assert grown(empty, 10 * GIB // 512) is None
    assert grown(table[:100], 10 * GIB // 512) is None


def test_an_mbr_counts_at_most_2_tib() -> None:
    new = grown(mbr(3 * GIB, b""), 4 * 1024 * GIB // 512)
    assert new is not None and partition_sectors(new)[1] == MAX_SECTORS


def test_qemu_io_dump_parses_to_the_bytes() -> None:
    dump = ("00000000:  eb 63 90 00 00 00 00 00 00 00 00 00 00 00 00 00  .c..............\n"
            "00000010:  55 aa 00 00 00 00 00 00 00 00 00 00 00 00 00 01  U...............\n"
            "read 32/32 bytes at offset 0\n32 bytes, 1 ops; 00.00 sec (1 MiB/sec and 10 ops/sec)\n")
    assert hexdump_bytes(dump) == bytes.fromhex("eb6390" + "00" * 13 + "55aa" + "00" * 13 + "01")
