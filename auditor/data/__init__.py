"""Data for building the zoo and measuring results. The audit path never imports this package."""
