"""The system layer: namespaces and netlink, knowing nothing of the lab."""
