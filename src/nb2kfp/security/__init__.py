"""What keeps secrets in and intruders out: masking, secret scanning of notebooks, repository policy."""
