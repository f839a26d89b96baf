"""Inference in the trainer process: base models and trained adapters answering chats, and deployments.

``engine`` keeps loaded models (one base in memory for all its adapters, under a memory budget) and runs the
decoding loop in threads; ``planner`` turns a request into what to load and how to sample (every bad field an
``InvalidArgument`` naming it); ``store`` persists the deployments; ``service`` is the gRPC servicer.
"""
