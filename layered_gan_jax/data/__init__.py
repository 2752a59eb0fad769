"""The data room: every image the networks read, for training and evaluation: synthetic, image folders, LSUN lmdb and tfds -> numpy batches.

The pipeline is described in docs/data.md. Modules:

* ``synthetic``, ``textures``: the embedded procedural dataset with exact masks; its textures.
* ``config``: dataset names, defaults and the checks of a data config.
* ``lmdb_database``: the open LSUN lmdb databases and their record counts.
* ``transforms``: resizing, the random-crop hashing, epoch permutations, the train transform.
* ``sources``: random-access sources (file, encoded, lmdb, synthetic, folder; eval sources).
* ``tfds_sources``: TensorFlow Datasets sources (train and eval), CUB test ids.
* ``prefetch``: the background prefetch thread, parallel decoding, the base batch iterator.
* ``image_io``: decoding images (and RGBA / grey conversion), reading them locally or from a bucket.
* ``train_input``: :func:`train_input.train_iterator`, the resumable multi-host training stream.
* ``eval_input``: :func:`eval_input.eval_dataset`, ordered padded evaluation passes.
"""
