"""Aether storage over an etcd cluster, through its HTTP/JSON gateway."""
