"""Two object categories in one run: the quick start (configs/synthetic.py, the same budget) on
the embedded dataset's categories 'round' (ellipses and blobs, smooth textures) and 'angular'
(polygons and stars, flat, striped or checked), mixed 0.5 / 0.5, evaluated per category:

  python main.py --config=configs/synthetic_two.py --workdir=/tmp/layered_gan_two --mode=pipeline

``eval/metrics.json`` scores every route and baseline on both test splits together (500 images
of each) and, under ``sources``, on each category's alone.
"""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.data.sources = (("synthetic", "round", 0.5), ("synthetic", "angular", 0.5))
  return config
