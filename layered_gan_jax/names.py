"""The names a user types, in one place: the modes of ``main.py``, the segmentation routes and
the baselines. The checks, ``main.py``'s help and the modules that implement them read them
here. Imports nothing.
"""

MODES = (
  "train",
  "train_encoder",
  "train_segmenter",
  "evaluate",
  "sample",
  "segment",
  "pipeline",
  "fid",
)
# segment.route: the U-Net distilled from the generator, or the paper's encoder.
ROUTES = ("distilled", "encoder")
BASELINES = ("full_image", "center_prior", "kmeans", "grabcut")  # eval.baselines
