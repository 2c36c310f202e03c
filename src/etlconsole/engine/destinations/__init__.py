"""Destinations: where loaded batches land, each batch with its ledger entry."""
