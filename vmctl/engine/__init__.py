"""Docker Engine inside a guest: install methods (``install``), the offline
package push (``debs``), the Docker SDK client over pinned SSH (``client``, the
only module that imports ``docker``), and loading container images.
"""
