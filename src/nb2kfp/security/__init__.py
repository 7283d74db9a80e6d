"""What keeps secrets in and intruders out: secret scanning of notebooks, repository policy (masking, used by every
layer, is :mod:`nb2kfp.masking`)."""
