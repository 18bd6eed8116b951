"""The HTML report of a run directory: ``render.write_report(run_dir)`` writes one self-contained
page (charts embedded as base64 PNG) and the charts as PNG files; ``plots`` draws the charts with
matplotlib's Agg canvas. Submodules import pandas and matplotlib, so this package re-exports
nothing (importing ``harness.report`` stays cheap for the CLI).
"""
