"""Moved: the local target is authbench/targets/local.py. These names stay importable
from here for the modules that still use this path; new code imports the new one."""

from authbench.process import PROJECT_ROOT as PROJECT_ROOT
from authbench.process import free_port_block as free_port_base
from authbench.targets.base import http_status as http_status
from authbench.targets.local import Child as Child
from authbench.targets.local import ClusterError as ClusterError
from authbench.targets.local import LocalCluster as LocalCluster
from authbench.targets.local import Ports as Ports

__all__ = [
    "PROJECT_ROOT", "Child", "ClusterError", "LocalCluster", "Ports", "free_port_base",
    "http_status",
]  # fmt: skip
