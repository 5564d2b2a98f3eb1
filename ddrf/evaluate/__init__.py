"""`ddrf-eval`: datasets (PanCollection, FuseBox, GeoTIFF pairs), methods (classical, ONNX DDRF, checkpoints),
toolbox-exact metrics at reduced and full resolution, table/CSV/JSON reports and quicklook figures.

Submodules are imported lazily by `ddrf.evaluate.command` so classical runs never pull in torch.
"""
