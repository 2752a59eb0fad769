"""Every random stream a run draws from its ``config.seed``, and the offset that keeps the
streams apart: ``seed + OFFSET`` is the stream's own seed. One table, so that two streams never
share a seed by accident and a reader finds where any random number comes from.

The values are those the project has always used: changing one changes every result that
depends on that stream.
"""

# The GAN.
GAN_INIT = 0  # its parameters and base key (``states.init_replicated``)
GAN_DATA_STAGE_STRIDE = 1000  # stage ``s`` reads its data stream with ``seed + s * this``
GAN_SAMPLE_GRID = 12345  # the fixed latents of the trainer's sample grids

# FID / KID and the generated masks' statistics.
FID_SAMPLES = 4048  # the generated images of FID / KID
FID_CHUNK_STRIDE = 7919  # chunk ``i`` of those images: ``seed + FID_SAMPLES + i * this``
GENERATED_MASK_STATISTICS = 2024  # the latents of the evaluate mode's generated-mask statistics

# The encoder.
ENCODER_MEAN_STYLES = 4242  # the latents whose mean styles the encoder's decoding starts from
ENCODER_INIT = 99  # its parameters
ENCODER_DATA = 555  # its stream of real images

# The distilled segmenter.
SEGMENTER_INIT = 314  # its parameters
SEGMENTER_VALIDATION = 777  # its fixed set of generated validation pairs

# The sample mode (its seed is the --seed flag, not the config's).
TRUNCATION_MEAN_STYLES = 1  # the latents whose mean styles the truncation trick pulls towards
