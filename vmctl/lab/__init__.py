"""The boot lab: VM boot phase by phase against container start (``run``),
its statistics and table (``data``), and charts (``plot``, needs matplotlib).
"""
