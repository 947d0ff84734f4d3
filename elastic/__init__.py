"""ELASTIC: linear dispatcher attention and a product-key interest memory for long-sequence
recommendation, with a SASRec baseline, data, training, evaluation and complexity tools."""

__version__ = "0.1.0"
