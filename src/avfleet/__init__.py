"""avfleet: a Kubernetes-native data engine for autonomous-vehicle perception.

`import avfleet` stays light: heavy libraries (pyspark, torch, tritonclient,
kubernetes) are imported inside the modules that need them.
"""

__version__ = "0.1.0"
