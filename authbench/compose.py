"""Moved: the compose target is authbench/targets/compose.py. These names stay importable
from here for the modules that still use this path; new code imports the new one."""

from authbench.targets.compose import ComposeError as ComposeError
from authbench.targets.compose import ComposeTarget as ComposeTarget
from authbench.targets.compose import Container as Container
from authbench.targets.compose import LocustRun as LocustRun
from authbench.targets.compose import parse_redis_info as parse_redis_info
