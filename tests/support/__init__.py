"""Helpers shared by the tests and the benchmarks (nothing downloaded):

- ``net``: free loopback ports;
- ``wait``: ``until`` (async) / ``wait_until`` (blocking) polling with a deadline naming what it waited for;
- ``services``: a service as its own OS process (``ServiceProcess``), readiness waits, the ``EXPORTER_*`` /
  ``TRAINER_*`` / ``GATEWAY_*`` environment of a test instance;
- ``tiny_model``: the tiny random Llama (a normal model folder);
- ``tiny_gguf``: the same model written as a GGUF file (provisioning's input).
"""
