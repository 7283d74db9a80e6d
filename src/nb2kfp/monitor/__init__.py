"""The Monitor stage: drift of a served model's requests against its reference sample."""
