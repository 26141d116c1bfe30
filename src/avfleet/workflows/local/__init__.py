"""The local executor: runs rendered Argo workflows on one machine (development and CI).

Not a scheduler: it walks one workflow's DAG in dependency order, runs each
step as a local process, and maps resource kinds to embedded engines
(`avfleet.workflows.local.engines`).
"""
