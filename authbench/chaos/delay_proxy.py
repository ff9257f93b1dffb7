"""Moved to authbench.delay_proxy (bench and chaos share it); kept for old imports."""

from authbench.delay_proxy import DelayLink as DelayLink
from authbench.delay_proxy import DelayProxy as DelayProxy
