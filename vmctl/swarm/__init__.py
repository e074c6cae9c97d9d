"""Docker Swarm host pools: ``pool`` places and converges nodes, ``ops`` runs
Swarm operations on a node over SSH.
"""
