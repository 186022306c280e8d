"""Quantized federated learning (FedAQT, seed 002 chapter 3) and its Flower apps.

The method itself (partitioners, quantized broadcast, client steps, server update, the
gradient relay, byte and memory accounting) lives in framework-free modules; ``flower``
wraps it in a Flower strategy, ClientApp and ServerApp; ``cli`` is ``wrapkit fl``.
"""
