"""tgsr: text-guided super-resolution (Ma et al., "Rethinking Super-Resolution as Text-Guided
Details Generation", ACM MM 2022).

Public API::

    from tgsr import TGSRPipeline, load_config
"""

from tgsr._version import __version__
from tgsr.config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "TGSRPipeline", "__version__", "load_config"]


def __getattr__(name: str):
    if name == "TGSRPipeline":  # lazy: keeps `import tgsr` light
        from tgsr.pipeline import TGSRPipeline

        return TGSRPipeline
    raise AttributeError(name)
