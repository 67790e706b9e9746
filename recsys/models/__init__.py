"""Recommenders: each fits on canonical interactions and exports an EmbeddingModel."""
