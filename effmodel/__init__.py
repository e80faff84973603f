"""effmodel: when is a converted spiking network cheaper than the ANN it came from?

Plugin authors need only :data:`hookimpl` (see ``CONTRIBUTING.md``).
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("effmodel")

__all__ = ["hookimpl", "__version__"]
