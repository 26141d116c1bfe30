"""Argo workflows: Hera builders, rendering into manifests/, validation, and the local executor."""
