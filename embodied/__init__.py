"""embodied: pretrained vision encoders feeding robot policies, on simulated and real robots.

Importing the package is cheap on purpose: no simulator, model library or GPU work happens here.
"""

__version__ = "0.1.0"
