"""End-to-end pipelines that recipes name: data -> teacher -> student -> exports -> report."""
from ..config import PIPELINES  # noqa: F401
from . import trigger  # noqa: F401  (registers pipelines)
from . import calo  # noqa: F401
from . import kd4ad  # noqa: F401
from . import pkdgan  # noqa: F401
from . import feature_kd  # noqa: F401
