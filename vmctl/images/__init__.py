"""Base images: definitions and the cache (``catalog``), verified downloads,
local builds (mmdebstrap, extlinux, the lean initramfs), and the boot test.
"""
