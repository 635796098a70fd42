"""The topics of the results page, one module each (`benchmarks/results_page.py` lays them out).

A topic module has a `TITLE` and `SECTIONS`, a tuple of functions that each answer one question:
they read result files through `read` and return a `cells.Section` (heading, one-line answer for the
index, the tables with their provenance). Its page is `benchmarks/results_pages/<module>.md`.
"""
