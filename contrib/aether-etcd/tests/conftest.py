from etcd_server import etcd_server

__all__ = ["etcd_server"]
