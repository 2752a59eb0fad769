"""The scores: segmentation metrics of masks against ground truth, the baselines that need no
training, and FID / KID of a generator."""
