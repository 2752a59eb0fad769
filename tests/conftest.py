"""Shared pytest setup: keep the CPU tests small and reproducible."""
import os

# TensorFlow (used by tf.data / tfds / clu) must never grab an accelerator or spam logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
