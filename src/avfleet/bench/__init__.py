"""The bench: engines, measurement, the agent that runs on a bench device, and the operator logic."""
