"""The modes that use a trained run: evaluate and fid (:mod:`.evaluate`), sample and segment
(:mod:`.inference`)."""
